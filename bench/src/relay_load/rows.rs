//! The figures as the report's rows, each beside its idle baseline or its
//! target.

use super::{Count, Figures};
use crate::report::{Row, mib, ms};
use crate::stats::ratio;

/// The targets.
const RSS_TARGET_MB: f64 = 200.0;
const DISCOVER_P99_TARGET_MS: f64 = 10.0;
/// The report's name for these rows.
const B: &str = "relay";
const RELAY_PART_P50: &str =
    "discover → answer p50, the relay's part (a probe counting the records, not checking them)";
const LOAD_DISCOVERS: &str = "records counted, not checked; all in this process";
/// Most records a discover answer may carry (the relay's default clamp).
const DISCOVER_CLAMP: usize = 100;
/// Bytes per MB over bytes per MiB.
const MIB_IN_MB: f64 = 1.048_576;

pub fn rows(f: &Figures) -> Vec<Row> {
    let rss_target = format!(
        "≤ {RSS_TARGET_MB:.0} MB (= {:.1} MiB)",
        RSS_TARGET_MB / MIB_IN_MB
    );
    let load = format!(
        "{} reservations, {} circuits, {} rendezvous peers",
        f.reservations.asked, f.circuits.asked, f.registrations.asked
    );
    let idle_mib = format!("{} idle", mib(f.relay_rss_idle_mib));
    let idle_cpu = format!("{} idle", core_pct(f.relay_cpu_idle_pct));
    let with_lost = |c: &Count| {
        if c.lost > 0 {
            format!("{} ({} lost)", c.fraction(), c.lost)
        } else {
            c.fraction()
        }
    };
    let idle_failures: usize = [
        &f.idle_clients,
        &f.idle_registrations,
        &f.idle_circuits,
        &f.idle_discovers,
        &f.idle_echoes,
    ]
    .iter()
    .map(|c| c.failures())
    .sum();
    let mut rows = vec![
        Row::new(
            B,
            "reservations held to the end of the hold",
            with_lost(&f.reservations),
        )
        .baseline(format!("idle relay: {}", f.idle_clients.fraction())),
        Row::new(
            B,
            format!("rendezvous registrations ({} namespaces)", f.namespaces),
            with_lost(&f.registrations),
        )
        .baseline(format!("idle relay: {}", f.idle_registrations.fraction())),
        Row::new(
            B,
            format!(
                "circuits, each echoing {} B every {:.0} ms",
                f.echo_bytes, f.echo_interval_ms
            ),
            with_lost(&f.circuits),
        )
        .baseline(format!("idle relay: {}", f.idle_circuits.fraction())),
        Row::new(
            B,
            format!("discovers answered during the {:.0} s hold", f.hold_s),
            f.discovers.fraction(),
        )
        .baseline(format!("idle relay: {}", f.idle_discovers.fraction())),
        Row::new(
            B,
            format!("relay RSS under load ({load})"),
            mib(f.relay_rss_loaded_mib),
        )
        .against(
            idle_mib.clone(),
            ratio(f.relay_rss_loaded_mib, f.relay_rss_idle_mib),
        )
        .target(
            rss_target.clone(),
            within_megabytes(f.relay_rss_loaded_mib, RSS_TARGET_MB),
        ),
        Row::new(
            B,
            "relay peak RSS (VmHWM, the ramp included)",
            mib(f.relay_peak_rss_mib),
        )
        .against(idle_mib, ratio(f.relay_peak_rss_mib, f.relay_rss_idle_mib))
        .target(
            rss_target,
            within_megabytes(f.relay_peak_rss_mib, RSS_TARGET_MB),
        ),
        Row::new(
            B,
            "relay CPU during the hold",
            core_pct(f.relay_cpu_hold_pct),
        )
        .against(
            idle_cpu.clone(),
            ratio(f.relay_cpu_hold_pct, f.relay_cpu_idle_pct),
        ),
        Row::new(
            B,
            format!("relay CPU for the ramp ({:.1} s)", f.ramp_s),
            format!("{:.2} CPU-s", f.relay_cpu_ramp_s),
        )
        .baseline(idle_cpu),
        Row::new(
            B,
            format!(
                "discover → answer p50, probe checking every record as a node does ({:.0} registrations an answer)",
                f.registrations_per_answer
            ),
            ms(f.discover.p50_ms),
        )
        .against(
            format!(
                "{} idle ({:.0} an answer)",
                ms(f.idle_discover.p50_ms),
                f.idle_registrations_per_answer
            ),
            ratio(f.discover.p50_ms, f.idle_discover.p50_ms),
        ),
        beside_idle(
            format!(
                "discover → answer p99, probe checking every record ({} samples)",
                f.discover.samples
            ),
            f.discover.p99_ms,
            f.idle_discover.p99_ms,
        ),
        beside_idle(
            RELAY_PART_P50,
            f.relay_discover.p50_ms,
            f.idle_relay_discover.p50_ms,
        ),
        beside_idle(
            format!(
                "discover → answer p99, the relay's part ({} samples)",
                f.relay_discover.samples
            ),
            f.relay_discover.p99_ms,
            f.idle_relay_discover.p99_ms,
        )
        .target(
            format!("discover p99 ≤ {DISCOVER_P99_TARGET_MS:.0} ms"),
            f.relay_discover.samples > 0 && f.relay_discover.p99_ms <= DISCOVER_P99_TARGET_MS,
        ),
        Row::new(
            B,
            format!(
                "discover: the client's own share, verifying {:.0} signed records (median)",
                f.idle_registrations_per_answer
            ),
            ms(f.discover_verify_floor.p50_ms),
        )
        .against(
            format!("{} idle discover p50", ms(f.idle_discover.p50_ms)),
            ratio(f.discover_verify_floor.p50_ms, f.idle_discover.p50_ms),
        ),
        beside_idle(
            format!(
                "discover → answer p99 as the {} load clients time it ({LOAD_DISCOVERS})",
                f.registrations.asked
            ),
            f.load_discover.p99_ms,
            f.idle_discover.p99_ms,
        ),
        beside_idle(
            format!(
                "echo round trip over a circuit p50, probe ({} samples)",
                f.echo.samples
            ),
            f.echo.p50_ms,
            f.idle_echo.p50_ms,
        ),
        beside_idle(
            "echo round trip over a circuit p99, probe",
            f.echo.p99_ms,
            f.idle_echo.p99_ms,
        ),
        beside_idle(
            format!(
                "echo round trip p99 over the {} load circuits (all in this process)",
                f.circuits.held()
            ),
            f.load_echo.p99_ms,
            f.idle_echo.p99_ms,
        ),
        Row::new(B, "honest clients refused", refusals_text(f))
            .baseline(format!("idle relay: {idle_failures}"))
            .target("no honest client refused", f.refusals == 0),
        Row::new(
            B,
            "load generator CPU during the hold (same machine)",
            core_pct(f.generator_cpu_hold_pct),
        )
        .baseline(format!(
            "{} cores shared with the relay",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )),
    ];
    rows.extend(flood_rows(f));
    rows
}

/// The discover flood's rows: the relay's RSS beside idle, and what the
/// flood's discovers got.
fn flood_rows(f: &Figures) -> Vec<Row> {
    let d = &f.flood;
    if d.asked == 0 {
        return Vec::new();
    }
    let mean = ratio(d.wide_records as f64, d.wide_answered as f64);
    vec![
        Row::new(
            B,
            format!(
                "relay RSS under {} discovers, half without a namespace, half for a room with limit {} ({:.1} s, the load connected)",
                d.asked, f.flood_limit, d.seconds
            ),
            mib(d.rss_peak_mib),
        )
        .against(
            format!(
                "{} idle, {} before the flood, {} after",
                mib(f.relay_rss_idle_mib),
                mib(d.rss_before_mib),
                mib(d.rss_after_mib)
            ),
            ratio(d.rss_peak_mib, f.relay_rss_idle_mib),
        )
        .target(
            format!("≤ {RSS_TARGET_MB:.0} MB"),
            within_megabytes(d.rss_peak_mib, RSS_TARGET_MB),
        ),
        Row::new(
            B,
            "discovers without a namespace refused",
            format!("{}/{}", d.everything_refused, d.everything_asked),
        )
        .target(
            "all refused",
            d.everything_refused == d.everything_asked,
        ),
        Row::new(
            B,
            format!("records in a wide discover answer (limit {} asked)", f.flood_limit),
            format!(
                "max {}, mean {mean:.0} ({}/{} answered, {} failed)",
                d.wide_max_records, d.wide_answered, d.wide_asked, d.failed
            ),
        )
        .target(
            format!("≤ {DISCOVER_CLAMP}"),
            d.wide_answered > 0 && d.wide_max_records <= DISCOVER_CLAMP,
        ),
    ]
}

/// A latency under load beside the same on the idle relay.
fn beside_idle(what: impl Into<String>, loaded_ms: f64, idle_ms: f64) -> Row {
    Row::new(B, what, ms(loaded_ms))
        .against(format!("{} idle", ms(idle_ms)), ratio(loaded_ms, idle_ms))
}

fn refusals_text(f: &Figures) -> String {
    if f.refusals == 0 {
        return "0".to_owned();
    }
    let mut probe_requests = f.probe_discovers;
    probe_requests.add(&f.probe_echoes);
    let parts: Vec<String> = [
        ("reservations", &f.reservations),
        ("registrations", &f.registrations),
        ("circuits", &f.circuits),
        ("discovers", &f.discovers),
        ("echoes", &f.echoes),
        ("probe requests", &probe_requests),
        ("probe connections", &f.probe_connections),
    ]
    .iter()
    .filter(|(_, c)| c.failures() > 0)
    .map(|(what, c)| format!("{} {what}", c.failures()))
    .collect();
    format!("{} ({})", f.refusals, parts.join(", "))
}

fn core_pct(v: f64) -> String {
    format!("{v:.1} % of a core")
}

/// Whether `mib` MiB is at most `mb` MB (10^6 bytes).
fn within_megabytes(mib: f64, mb: f64) -> bool {
    mib * MIB_IN_MB <= mb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_target_is_in_megabytes_not_mebibytes() {
        assert!(within_megabytes(190.0, 200.0));
        assert!(!within_megabytes(195.0, 200.0));
    }

    #[test]
    fn a_refusal_is_counted_and_named() {
        let mut f = Figures::default();
        assert_eq!(refusals_text(&f), "0");
        f.discovers = Count {
            asked: 10,
            ok: 8,
            refused: 2,
            lost: 0,
        };
        f.circuits = Count {
            asked: 4,
            ok: 4,
            refused: 0,
            lost: 1,
        };
        f.refusals = 3;
        assert_eq!(refusals_text(&f), "3 (1 circuits, 2 discovers)");
        assert_eq!(f.circuits.fraction(), "3/4");
        let refused = rows(&f)
            .into_iter()
            .find(|r| r.what == "honest clients refused")
            .unwrap();
        assert!(refused.target.is_some_and(|t| !t.met));
    }
}
