"""What a soak run concludes (scripts/soak.py; docs/THREATS.md, "Churning mesh (soak)"):
the leak verdict of a steady node over the quiet phase, the growth while content was
added, the peaks, each home's fsck, whether the run passed, and the table it prints."""

from __future__ import annotations

import json
import statistics
from typing import Any

from soakkit import Host, meshdrop

# The leak tolerances (docs/THREATS.md says why): the last third of a steady node's
# samples against the first third, after the warm-up.
RSS_TOLERANCE_KIB, RSS_TOLERANCE_SHARE = 16 * 1024, 0.20
FDS_TOLERANCE = 10
THREADS_TOLERANCE = 6


def clock(seconds: float) -> str:
    return f"{int(seconds) // 60}:{int(seconds) % 60:02d}"


def thirds(values: list[float]) -> tuple[list[float], list[float]]:
    third = len(values) // 3
    return values[:third], values[-third:]


def growth(host: Host, start: float, end: float) -> dict[str, Any]:
    """Medians of the first and last thirds of a node's figures between ``start`` and
    ``end`` (seconds of the run): how it grew while content was added (not judged)."""
    samples = [s for s in host.samples if start <= s.at <= end]
    if len(samples) < 9:
        return {"samples": len(samples)}
    first, last = thirds([float(s.rss_kib) for s in samples])
    return {
        "samples": len(samples),
        "rss_mib": [round(statistics.median(x) / 1024, 1) for x in (first, last)],
    }


def judge(host: Host, start: float, end: float) -> dict[str, Any]:
    """Did a node that ran all along grow while what it held stayed the same (the quiet
    phase, from ``start`` to ``end``)? The median of each figure over the last third of
    its samples against the first third (a trend, not one reading)."""
    samples = [s for s in host.samples if start <= s.at <= end]
    if len(samples) < 9:
        return {"verdict": "too few samples", "samples": len(samples)}
    first_rss, last_rss = thirds([float(s.rss_kib) for s in samples])
    first_fds, last_fds = thirds([float(s.fds) for s in samples])
    first_thr, last_thr = thirds([float(s.threads) for s in samples])
    rss_a, rss_b = statistics.median(first_rss), statistics.median(last_rss)
    grew = []
    if rss_b - rss_a > max(RSS_TOLERANCE_KIB, RSS_TOLERANCE_SHARE * rss_a):
        grew.append("memory")
    if statistics.median(last_fds) - statistics.median(first_fds) > FDS_TOLERANCE:
        grew.append("descriptors")
    if statistics.median(last_thr) - statistics.median(first_thr) > THREADS_TOLERANCE:
        grew.append("threads")
    return {
        "verdict": "leak: " + ", ".join(grew) if grew else "none",
        "samples": len(samples),
        "rss_mib": [round(rss_a / 1024, 1), round(rss_b / 1024, 1)],
        "fds": [statistics.median(first_fds), statistics.median(last_fds)],
        "threads": [statistics.median(first_thr), statistics.median(last_thr)],
    }


def peaks(host: Host) -> dict[str, Any]:
    if not host.samples:
        return {"rss_mib": None, "fds": None, "threads": None, "starts": host.starts}
    return {
        "rss_mib": round(max(s.rss_kib for s in host.samples) / 1024, 1),
        "fds": max(s.fds for s in host.samples),
        "threads": max(s.threads for s in host.samples),
        "starts": host.starts,
    }


def fsck_home(host: Host) -> str:
    ran = meshdrop("--home", host.home, "fsck", "--json", "--quiet")
    if ran.code != 0:
        return f"exit {ran.code}: {ran.err.strip() or ran.out.strip()}"
    report = json.loads(ran.out)
    return "clean" if not report["damaged_bundles"] and not report["damaged_chunks"] else ran.out


def passed(result: dict[str, Any]) -> bool:
    return (
        result["convergence_s"] is not None
        and result["quiet_convergence_s"] is not None
        and not result["bad_listings"]
        and not result["node_exits"]
        and not result["node_troubles"]
        and all(v == "clean" for v in result["fsck"].values())
        and all(v["verdict"] == "none" for v in result["leaks"].values())
    )


def table(result: dict[str, Any]) -> str:
    fsck = result["fsck"].values()
    lines = [
        f"seed {result['seed']}",
        f"{'duration':<22}{result['duration_s']} s",
        f"{'nodes':<22}{result['nodes']}",
        f"{'kills / restarts':<22}{result['kills']} / {result['restarts']}",
        f"{'partitions':<22}{result['partitions']}",
        f"{'sticks':<22}{result['sticks']}",
        f"{'bundles published':<22}{result['bundles_published']} ({result['bundle_names']} names)",
        f"{'publisher updates':<22}{result['publisher_updates']}",
        f"{'convergence':<22}{result['convergence_s']} s after the last change",
        f"{'quiet phase':<22}{result['quiet_s']} s of churn without new content; converged"
        f" {result['quiet_convergence_s']} s after",
        f"{'ls samples':<22}{result['ls_samples']}, {len(result['bad_listings'])} bad",
        f"{'fsck':<22}{sum(v == 'clean' for v in fsck)} of {len(result['fsck'])} clean",
        "",
        f"{'node':<8}{'starts':>7}{'peak RSS MiB':>14}{'peak fds':>10}{'peak threads':>14}"
        "  leak verdict",
    ]
    for name, peak in result["peaks"].items():
        verdict = result["leaks"].get(name, {}).get("verdict", "(restarted: not judged)")
        lines.append(
            f"{name:<8}{peak['starts']:>7}{peak['rss_mib']!s:>14}{peak['fds']!s:>10}"
            f"{peak['threads']!s:>14}  {verdict}"
        )
    for name, grew in result["growing_phase"].items():
        if "rss_mib" in grew:
            first, last = grew["rss_mib"]
            lines.append(
                f"{name}: {first} -> {last} MiB (medians of the first and last thirds) while"
                " content was added (not judged: it follows what is held)"
            )
    lines += result["bad_listings"][:20] + result["node_exits"]
    for name, troubles in result["node_troubles"].items():
        lines += [f"{name}: {len(troubles)} troubles, first: {troubles[0]}"]
    lines += [f"{name}: fsck {v}" for name, v in result["fsck"].items() if v != "clean"]
    return "\n".join(lines)
