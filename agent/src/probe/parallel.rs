//! Everything after the default client, side by side: the client
//! certificate check, TLS 1.0–1.3 each alone, the handshake without SNI,
//! and (unless quick) the suite and group enumeration and the simulated
//! clients' hellos. The longest chains of round trips (suite
//! enumeration) are queued first.

use std::net::SocketAddr;

use super::handshake::{self, Attempt, AttemptSpec};
use super::hello::{self, Flight};
use super::iana::{TLS1_2, TLS1_3};
use super::matrix::{self, VersionAttempt};
use super::pool::{self, Job};
use super::profiles::{ClientProfile, PROFILES};
use super::request::http_request;
use super::run::Setup;
use super::suites::{self, VersionSuites};
use super::{ProbeError, Progress};

/// What the side-by-side stage found.
pub(super) struct Results {
    /// The request sent to see whether a requested certificate is required.
    pub request: Option<Attempt>,
    pub versions: Vec<VersionAttempt>,
    pub no_sni: Option<Attempt>,
    /// One entry per version when the enumeration ran, else empty.
    pub suites: Vec<VersionSuites>,
    /// (version, groups, why it stopped early).
    pub groups: Vec<(u16, Vec<u16>, Option<String>)>,
    pub flights: Vec<(&'static ClientProfile, Flight)>,
}

enum Output {
    Request(Option<Attempt>),
    Version(VersionAttempt),
    NoSni(Option<Attempt>),
    Suites(VersionSuites),
    Groups(u16, Vec<u16>, Option<String>),
    Client(&'static ClientProfile, Flight),
}

type Work<'a> = Job<'a, Result<Output, ProbeError>>;

/// The named curve of an EC leaf, as a TLS group id.
fn certificate_curve(standard: &Attempt) -> Option<u16> {
    let leaf = openssl::x509::X509::from_der(standard.chain.first()?).ok()?;
    let key = leaf.public_key().ok()?.ec_key().ok()?;
    match key.group().curve_name()? {
        openssl::nid::Nid::X9_62_PRIME256V1 => Some(23),
        openssl::nid::Nid::SECP384R1 => Some(24),
        openssl::nid::Nid::SECP521R1 => Some(25),
        _ => None,
    }
}

fn enumeration_jobs<'a>(
    setup: &'a Setup,
    addr: SocketAddr,
    curve: Option<u16>,
    jobs: &mut Vec<Work<'a>>,
) {
    let sni = setup.sni.as_deref();
    let budget = &setup.budget;
    for version in suites::VERSIONS {
        jobs.push(Job::new("cipher suites", move || {
            Ok(Output::Suites(suites::enumerate_version(
                addr, sni, version, budget,
            )))
        }));
    }
    for version in [TLS1_2, TLS1_3] {
        jobs.push(Job::new("key-exchange groups", move || {
            let (groups, why) = suites::enumerate_groups(addr, sni, version, curve, budget);
            Ok(Output::Groups(version, groups, why))
        }));
    }
}

fn client_jobs<'a>(setup: &'a Setup, addr: SocketAddr, jobs: &mut Vec<Work<'a>>) {
    let sni = setup.sni.as_deref();
    let budget = &setup.budget;
    for &profile in PROFILES.iter() {
        jobs.push(Job::new("client simulation", move || {
            let flight = match budget.step_deadline() {
                Some(deadline) => hello::exchange(addr, &profile.hello(sni), deadline),
                None => Flight {
                    timed_out: true,
                    ..Flight::default()
                },
            };
            Ok(Output::Client(profile, flight))
        }));
    }
}

/// Runs the stage. `skip` says why nothing but the certificate check is
/// worth trying (a silent server, a plain-text one).
pub(super) fn run(
    setup: &Setup,
    addr: SocketAddr,
    standard: &Attempt,
    standard_spec: &AttemptSpec,
    skip: Option<&str>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Result<Results, ProbeError> {
    let mut jobs: Vec<Work> = Vec::new();
    let quick = setup.options.quick;
    if skip.is_none() && !quick {
        enumeration_jobs(setup, addr, certificate_curve(standard), &mut jobs);
    }
    // Does the server insist on the client certificate it asked for?
    if standard.completed && standard.certificate_request.is_some() {
        let mut spec = standard_spec.clone();
        spec.alpn = &["http/1.1"];
        spec.ocsp = false;
        spec.request = Some(http_request(&setup.target, &setup.verify_name));
        let budget = &setup.budget;
        jobs.push(Job::new("client certificate", move || {
            let attempt = match budget.step_deadline() {
                Some(deadline) => Some(handshake::run(&spec, addr, None, deadline)?),
                None => None,
            };
            Ok(Output::Request(attempt))
        }));
    }
    if skip.is_none() {
        let sni = setup.sni.as_deref();
        let budget = &setup.budget;
        for version in matrix::VERSIONS {
            jobs.push(Job::new("protocol versions", move || {
                Ok(Output::Version(matrix::version_attempt(
                    addr, sni, version, budget,
                )?))
            }));
        }
        if sni.is_some() {
            jobs.push(Job::new("without SNI", move || {
                Ok(Output::NoSni(matrix::without_sni(addr, budget)?))
            }));
        }
        if !quick {
            client_jobs(setup, addr, &mut jobs);
        }
    }
    let mut results = Results {
        request: None,
        versions: Vec::new(),
        no_sni: None,
        suites: Vec::new(),
        groups: Vec::new(),
        flights: Vec::new(),
    };
    for output in pool::run_all(jobs, pool::MAX_PARALLEL, progress)? {
        match output? {
            Output::Request(a) => results.request = a,
            Output::Version(v) => results.versions.push(v),
            Output::NoSni(a) => results.no_sni = a,
            Output::Suites(s) => results.suites.push(s),
            Output::Groups(v, g, why) => results.groups.push((v, g, why)),
            Output::Client(p, f) => results.flights.push((p, f)),
        }
    }
    Ok(results)
}
