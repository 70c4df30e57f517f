//! Reading a guest's results: the verdict per kernel and the report.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::Duration;

use super::*;

/// Reads a guest's results and decides.
pub(super) fn judge(
    kernel: &MatrixKernel,
    files: &fetch::KernelFiles,
    dir: &Path,
    duration: Duration,
) -> Outcome {
    let results = dir.join("results");
    let read = |name: &str| fs::read_to_string(results.join(name)).unwrap_or_default();
    let release = match read("uname").trim() {
        "" => files.release.clone(),
        r => r.to_string(),
    };
    let state = read("agent-start.state").trim().to_string();
    let agent_log = read("agent-start.log");
    let mut details = String::new();
    let timings = read("timings");
    if !timings.is_empty() {
        let _ = writeln!(
            details,
            "Guest speed: {}\n",
            timings.trim().replace('\n', "; ")
        );
    }
    let verdict = if state.is_empty() {
        let _ = writeln!(
            details,
            "The guest ran nothing; console tail:\n\n```\n{}\n```",
            tail(
                &fs::read_to_string(dir.join("console.log")).unwrap_or_default(),
                40
            )
        );
        Verdict::Fail("the guest did not run the checks".into())
    } else if state != "capturing" {
        let error = agent_log
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("(no error line)")
            .to_string();
        let _ = writeln!(
            details,
            "Agent start ({state}), its log:\n\n```\n{}\n```",
            tail(&agent_log, 200)
        );
        match kernel.expect {
            Expect::RefuseAtStart if state == "exited" && is_one_clear_sentence(&error) => {
                Verdict::Pass(format!("refused at start, as expected: {error}"))
            }
            Expect::RefuseAtStart => Verdict::Fail(format!(
                "must refuse at start with one clear sentence; got ({state}): {error}"
            )),
            Expect::Capture => Verdict::Fail(match verifier_rejection(&agent_log) {
                Some(rejection) => rejection,
                None => format!("the agent did not start: {error}"),
            }),
        }
    } else {
        let status = check_status(&read("status.json"));
        let capture_log = read("capture.log");
        let capture_rc = read("capture.rc").trim().to_string();
        let summary = capture_log
            .lines()
            .rev()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or("no test result line")
            .to_string();
        let _ = writeln!(details, "status.json: {}", status_line(&status));
        let failed: Vec<&str> = capture_log
            .lines()
            .filter_map(|l| {
                l.strip_prefix("test ")
                    .and_then(|t| t.strip_suffix(" ... FAILED"))
            })
            .collect();
        if capture_rc != "0" {
            let failures = capture_log
                .find("\nfailures:")
                .map(|at| &capture_log[at..])
                .unwrap_or(&capture_log);
            let _ = writeln!(
                details,
                "\nCapture test (exit {capture_rc}), failures:\n\n```\n{}\n```",
                tail(failures, 300)
            );
        }
        match (kernel.expect, &status, capture_rc.as_str()) {
            (Expect::RefuseAtStart, _, _) => Verdict::Fail(
                "the agent started on a kernel below the floor (it must refuse)".into(),
            ),
            (Expect::Capture, Err(e), _) => Verdict::Fail(format!("status.json: {e}")),
            (Expect::Capture, Ok(_), "0") => Verdict::Pass(format!("capture test: {summary}")),
            (Expect::Capture, Ok(_), _) => Verdict::Fail(format!(
                "capture test: {summary}; failed: {}",
                failed.join(", ")
            )),
        }
    };
    Outcome {
        name: kernel.name.clone(),
        what: kernel.what,
        expect: kernel.expect,
        release,
        verdict,
        duration,
        details,
    }
}

/// A verifier rejection in the agent's log, in one line: which program, the
/// verifier's reason (the line before its `verification time` summary) and
/// the instruction it stopped at. The full log is in the report's details.
fn verifier_rejection(log: &str) -> Option<String> {
    let error = log.lines().find(|l| l.contains("Verifier output"))?;
    let program = error
        .split("eBPF program ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("?");
    let lines: Vec<&str> = log.lines().collect();
    let summary = lines
        .iter()
        .position(|l| l.starts_with("verification time"))?;
    let reason = lines.get(summary.checked_sub(1)?)?.trim();
    let insn = summary
        .checked_sub(2)
        .and_then(|i| lines.get(i))
        .map(|l| l.trim())
        .unwrap_or("");
    Some(format!(
        "the verifier rejected {program}: {reason} (at `{insn}`)"
    ))
}

/// The agent's last `error:` line says which Linux it needs, in one short
/// line (not a loader error with a verifier log after it).
fn is_one_clear_sentence(error: &str) -> bool {
    let text = error.trim_start_matches("error:").trim();
    !text.is_empty()
        && text.len() <= 300
        && text.contains("Linux")
        && !text.contains("BPF_PROG_LOAD")
}

/// What status.json says about the kernel side.
struct StatusFacts {
    libraries_probed: usize,
    uprobes_attached: usize,
    kernel_counters: String,
}

fn check_status(text: &str) -> Result<StatusFacts, String> {
    if text.is_empty() {
        return Err("missing".into());
    }
    let status: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let libraries = status["libraries"].as_array().cloned().unwrap_or_default();
    let attached: usize = libraries
        .iter()
        .map(|l| l["attached"].as_array().map_or(0, Vec::len))
        .sum();
    if attached == 0 {
        return Err(format!(
            "no uprobe attached to the system's OpenSSL: {}",
            serde_json::to_string(&status["libraries"]).unwrap_or_default()
        ));
    }
    Ok(StatusFacts {
        libraries_probed: libraries.len(),
        uprobes_attached: attached,
        kernel_counters: serde_json::to_string(&status["kernel"]).unwrap_or_default(),
    })
}

fn status_line(status: &Result<StatusFacts, String>) -> String {
    match status {
        Ok(s) => format!(
            "{} libraries probed, {} uprobes attached; kernel counters {}",
            s.libraries_probed, s.uprobes_attached, s.kernel_counters
        ),
        Err(e) => e.clone(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Pass(s) => format!("PASS — {s}"),
        Verdict::Fail(s) => format!("FAIL — {s}"),
        Verdict::Skipped(s) => format!("SKIPPED — {s}"),
    }
}

pub(super) fn render_report(
    outcomes: &[Outcome],
    agent: &Path,
    accel: Accel,
    why: &str,
    skipped_tests: &[(&str, &str)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Kernel matrix (`cargo xtask kernels`)\n");
    let _ = writeln!(
        out,
        "Agent: `{}`. Guests: qemu, {accel:?} ({why}), 2 vCPUs, the host's root \
         filesystem read-only over virtiofs (tmpfs on /tmp and /run, tmpfs overlays on /var \
         and /root), loopback only. See docs/kernels.md.\n",
        agent.display()
    );
    if !skipped_tests.is_empty() {
        let _ = writeln!(
            out,
            "Skipped under {accel:?} (timing-bound, not kernel-bound; `--all-tests` runs them):\n"
        );
        for (test, why) in skipped_tests {
            let _ = writeln!(out, "- `{test}`: {why}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "| kernel | release | expected | result | time |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for o in outcomes {
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {} s |",
            o.name,
            o.what,
            o.release,
            match o.expect {
                Expect::Capture => "capture test passes",
                Expect::RefuseAtStart => "refuses at start",
            },
            verdict_line(&o.verdict).replace('|', "\\|"),
            o.duration.as_secs()
        );
    }
    for o in outcomes.iter().filter(|o| !o.details.is_empty()) {
        let _ = writeln!(out, "\n## {} ({})\n\n{}", o.name, o.release, o.details);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clear_sentence_has_no_cause_chain() {
        assert!(is_one_clear_sentence(
            "error: loading the eBPF programs: this kernel (5.10.0-32-cloud-amd64) lacks \
             the bpf_loop helper (Linux 5.17), which tlsdoctor's eBPF programs need"
        ));
        assert!(!is_one_clear_sentence(
            "error: loading the eBPF programs: eBPF program x: the BPF_PROG_LOAD syscall failed: invalid argument"
        ));
        assert!(!is_one_clear_sentence("error:"));
    }

    #[test]
    fn verifier_rejection_names_program_reason_and_instruction() {
        let log = "error: loading the eBPF programs: eBPF program sys_exit_read: the \
                   BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier \
                   output: reg type unsupported for arg#0 function sys_exit_read#78
0: R1=ctx(off=0,imm=0) R10=fp0
545: (85) call bpf_probe_read_user#112
R2 unbounded memory access, use 'var &= const' or 'if (var < const)'
verification time 78340 usec
stack depth 128+24+0
";
        assert_eq!(
            verifier_rejection(log).unwrap(),
            "the verifier rejected sys_exit_read: R2 unbounded memory access, use 'var &= \
             const' or 'if (var < const)' (at `545: (85) call bpf_probe_read_user#112`)"
        );
        assert_eq!(verifier_rejection("error: something else"), None);
    }

    #[test]
    fn status_without_attached_uprobes_fails() {
        let none = r#"{"libraries":[{"kind":"ssl","path":"/x","attached":[]}],"kernel":{}}"#;
        assert!(check_status(none).is_err());
        let some = r#"{"libraries":[{"kind":"ssl","path":"/x","attached":["a","b"]}],"kernel":{"ringbuf_full":0}}"#;
        let facts = check_status(some).unwrap();
        assert_eq!((facts.libraries_probed, facts.uprobes_attached), (1, 2));
        assert!(check_status("").is_err());
        assert!(check_status("{").is_err());
    }
}
