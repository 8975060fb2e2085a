"""`video-swin demo` (what `make demo` runs) end to end, as the executable runs it: every section runs
(nothing is skipped), the parity table passes, and the shipped model's line of correct predictions is
held to the README's claim.

The demo classifies 24 new clips (three per class, a seed never used in training). The number a model
gets right is Binomial(24, p) for its true accuracy p; a model that meets the claim (p >= 0.95) scores
fewer than `binomial_floor(24, 0.95, 1e-3)` = 19 with probability <= 1e-3, so 19 is the floor; a model at
chance (1/8) reaches it with probability < 1e-12 and one at 50 % with probability 0.003."""

import re

from tests.helpers import assert_no_native_lines, binomial_floor, run_cli


def test_the_demo_runs_every_section_and_its_model_meets_the_claim(tmp_path):
    result = run_cli("demo", timeout=1500, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-2000:])
    assert result.stderr == "", result.stderr[-2000:]  # no native line, no warning, nothing skipped there
    assert_no_native_lines(result.stdout)
    out = result.stdout
    assert "skipped" not in out.lower()
    sections = re.findall(r"^=== (\d+)\. (.*) ===$", out, re.MULTILINE)
    assert [int(n) for n, _ in sections] == list(range(1, 6)), sections
    for section in ("=== 1. The embedded default", "=== 2. Where the model looks", "=== 3. Parity",
                    "=== 4. Convert a checkpoint", "=== 5. A long video"):
        assert section in out, section
    (correct, total), = re.findall(r"^(\d+)/(\d+) correct on clips generated just now", out, re.MULTILINE)
    assert int(total) == 24 and len(re.findall(r"^(moving_\w+|rotating_\w+|growing|shrinking) ", out, re.MULTILINE)) == 24
    assert int(correct) >= binomial_floor(24, 0.95, alpha=1e-3) == 19, out[:3000]
    assert re.search(r"^PASS: (\d+)/\1 rows within 1e-05$", out, re.MULTILINE), out
    assert "These weights are RANDOM" in out and "  1. " in out  # section 4 ranked labels
    drawn = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "demo-output").rglob("*") if p.is_file())
    assert any(name.startswith("demo-output/explanation_") and name.endswith(".gif") for name in drawn), drawn
    for name in ("timeline.png", "long_video_labelled.mp4", "segments.json"):
        assert f"demo-output/timeline/{name}" in drawn, drawn
