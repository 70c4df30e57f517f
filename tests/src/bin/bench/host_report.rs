//! `agent diagnose`'s host report (discovery, config parse, chain
//! verification, listener scan, clock) against a running nginx with a dozen
//! TLS server blocks; no agent running.

use std::time::Instant;

use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};

use crate::{Row, Section, Settings, Shared};

pub fn run(s: &Settings, _shared: &mut Shared) -> Section {
    let pki = Pki::new();
    let port = free_port();
    let mut body = String::new();
    for i in 0..12 {
        let leaf = pki.leaf(&LeafSpec::new(&format!("site{i}.example")));
        body.push_str(&nginx_tls_block(
            port,
            &format!("site{i}.example"),
            &leaf.fullchain,
            &leaf.key,
            "",
        ));
    }
    let _server = nginx(port, &body);
    let runs = if s.quick { 2 } else { 10 };
    let dir = tlsdoctor_tests::TempDir::new("bench-report");
    let mut times = Vec::new();
    let mut blocks = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let report =
            agent::cli::diagnose::host::HostReport::gather(&dir.join("journal.jsonl"), None, None);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        blocks = report.servers.iter().map(|s| s.blocks.len()).sum();
    }
    times.sort_by(f64::total_cmp);
    let (median, max) = (times[times.len() / 2], times[times.len() - 1]);
    Section {
        body: format!(
            "## `agent diagnose` host report\n\nA running nginx with {blocks} TLS server blocks (12 certificates): median {median:.0} ms, max {max:.0} ms over {runs} runs (discovery, config parse, 12 chain verifications, listener scan, clock).\n\n"
        ),
        rows: vec![Row::new(
            "`agent diagnose` host report, 12 server blocks",
            "—",
            format!("median {median:.0} ms, max {max:.0} ms"),
            None,
        )],
    }
}
