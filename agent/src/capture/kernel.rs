//! What the capture programs need from the running kernel, checked before
//! loading them, so that an old kernel gets one sentence naming what is
//! missing instead of a verifier log (and a crash loop in a DaemonSet).
//!
//! The floor is the newest feature the programs use: `bpf_loop` (Linux
//! 5.17) drives the record walker. Feature probes, not version numbers:
//! distribution kernels backport (RHEL 9's 5.14 has `bpf_loop`). Passing
//! these checks is necessary, not sufficient: the oldest kernel the capture
//! test actually passed on (`cargo xtask kernels`) is in docs/kernels.md.

use aya::maps::MapType;
use aya::programs::ProgramType;
use aya::sys::{BpfHelper, is_helper_supported, is_map_supported};

/// A kernel feature the capture programs cannot do without.
struct Requirement {
    /// Names the feature, for the sentence.
    what: &'static str,
    /// The mainline release that added it.
    since: &'static str,
    probe: fn() -> Result<bool, String>,
}

const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        what: "BPF ring buffers",
        since: "5.8",
        probe: || {
            is_map_supported(MapType::RingBuf).map_err(|e| crate::text::Chain(&e).to_string())
        },
    },
    Requirement {
        what: "the bpf_loop helper",
        since: "5.17",
        probe: || {
            is_helper_supported(ProgramType::TracePoint, BpfHelper::BPF_FUNC_loop)
                .map_err(|e| crate::text::Chain(&e).to_string())
        },
    },
];

/// The running kernel lacks something the capture programs need.
#[derive(Debug, thiserror::Error)]
#[error(
    "this kernel ({release}) lacks {what} (Linux {since}), which tlsdoctor's eBPF programs need \
     (docs/kernels.md lists the kernels it is tested on)"
)]
pub struct UnsupportedKernel {
    release: String,
    what: &'static str,
    since: &'static str,
}

/// Checks the running kernel has what the capture programs need. A probe
/// that cannot tell (e.g. no permission to load programs at all) lets the
/// load go ahead: its own error is then the clearer one.
pub fn check_supported() -> Result<(), UnsupportedKernel> {
    first_missing(REQUIREMENTS.iter().map(|r| (r, (r.probe)())))
}

fn first_missing<'a>(
    probed: impl Iterator<Item = (&'a Requirement, Result<bool, String>)>,
) -> Result<(), UnsupportedKernel> {
    for (requirement, supported) in probed {
        match supported {
            Ok(true) => {}
            Ok(false) => {
                return Err(UnsupportedKernel {
                    release: kernel_release(),
                    what: requirement.what,
                    since: requirement.since,
                });
            }
            Err(e) => {
                tracing::debug!(feature = requirement.what, error = %e, "kernel feature probe inconclusive");
            }
        }
    }
    Ok(())
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "unknown release".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_missing_feature_is_named_in_one_sentence() {
        let probed = vec![(&REQUIREMENTS[0], Ok(true)), (&REQUIREMENTS[1], Ok(false))];
        let err = first_missing(probed.into_iter()).unwrap_err();
        let sentence = err.to_string();
        assert!(
            sentence.contains("lacks the bpf_loop helper (Linux 5.17)"),
            "{sentence}"
        );
        assert!(sentence.contains("docs/kernels.md"), "{sentence}");
        assert!(!sentence.contains('\n'), "{sentence}");
    }

    #[test]
    fn inconclusive_probes_let_the_load_go_ahead() {
        let probed = vec![
            (&REQUIREMENTS[0], Err("EPERM".to_string())),
            (&REQUIREMENTS[1], Ok(true)),
        ];
        assert!(first_missing(probed.into_iter()).is_ok());
    }
}
