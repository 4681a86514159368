"""The churning-mesh soak in short (issue 21; docs/THREATS.md, "Churning mesh (soak)"):
scripts/soak.py as a subprocess with 4 nodes in network namespaces for 30 s of churn
(publishing, new versions, a publisher record update, SIGKILLs and restarts, links down
and up, FAT32 sticks) and 24 s of churn without new content, then: every node converges
after each, every fsck is clean, nothing but finished bundles was ever listed, no steady
node grew during the quiet churn. The full run is ./scripts/soak."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_lan_netns import _why_unavailable

SOAK = Path(__file__).resolve().parents[2] / "scripts" / "soak.py"


def soak(*args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SOAK), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.xdist_group("mdns")  # with the other node and namespace tests, one at a time
def test_a_short_churning_mesh_converges_with_clean_stores_and_no_leak(tmp_path: Path) -> None:
    reason = _why_unavailable()
    if reason is not None:
        pytest.fail(f"the soak needs network namespaces: {reason}")
    ran = soak("--nodes", "4", "--minutes", "0.5", "--quiet-minutes", "0.4", "--seed", "2126",
               "--every", "1.5", "--sample-every", "1", "--ls-per-sample", "2",
               "--converge-timeout", "180", "--workdir", str(tmp_path / "soak"),
               "--json")  # fmt: skip
    assert ran.returncode in (0, 1), ran.stderr
    result = json.loads(ran.stdout)
    print(json.dumps(result, indent=1))
    assert result["convergence_s"] is not None, "the nodes did not converge"
    assert result["quiet_convergence_s"] is not None, "no convergence after the quiet phase"
    assert result["bad_listings"] == []
    assert result["node_exits"] == []
    assert result["node_troubles"] == {}
    assert set(result["fsck"].values()) == {"clean"}
    assert {v["verdict"] for v in result["leaks"].values()} == {"none"}
    for churn in ("kills", "restarts", "partitions", "sticks", "publisher_updates"):
        assert result[churn] >= 1, f"no {churn}: the run did not churn"
    assert result["bundles_published"] >= 3
    assert result["passed"] is True
    assert ran.returncode == 0


def test_the_soak_refuses_a_mesh_of_one_node_in_one_line() -> None:
    ran = soak("--nodes", "1", timeout=60)
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == ["scripts/soak: --nodes must be at least 2"]
    assert "Traceback" not in ran.stderr
