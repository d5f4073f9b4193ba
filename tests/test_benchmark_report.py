"""The docs' measured numbers come from stored benchmark results: docs/benchmarks.md and the
README's generated blocks are exactly what ``benchmarks/report.py`` renders from
``benchmarks/results/``, every stored result carries its environment, and the user docs hold
no dates or issue numbers."""

import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, child_env

sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import _results
    import report
finally:
    sys.path.remove(str(REPO / "benchmarks"))

USER_DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
ENVIRONMENT_KEYS = {"cpu", "python", "packages", "commit", "uncommitted_changes", "date",
                    "command", "cwd", "load_average", "threads"}


def test_docs_are_the_rendering_of_the_stored_results():
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "report.py"), "--check"],
                            capture_output=True, text=True, timeout=300, env=child_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert "up to date" in result.stdout


@pytest.mark.parametrize("path", sorted((REPO / "benchmarks" / "results").glob("*.json")),
                         ids=lambda path: path.name)
def test_every_stored_result_has_its_environment(path):
    record = json.loads(path.read_text())
    assert record["benchmark"] == path.stem and record["results"]
    env = record["environment"]
    assert ENVIRONMENT_KEYS <= set(env)
    assert env["cpu"]["model"] and env["cpu"]["cores"] >= 1
    assert set(env["cpu"]["flags"]) <= set(_results.CPU_FLAGS)
    assert env["packages"]["tensorflow"] and env["packages"]["larq"]
    assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", env["commit"])
    assert env["commit"].endswith("+dirty") == bool(env["uncommitted_changes"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["date"])
    assert env["command"].startswith("python benchmarks/")
    assert not [path for path in env["uncommitted_changes"] if path.startswith(_results.GENERATED)]


def _policy_record(tmp_path, float32, bfloat16):
    """A stored train_step --policy result with the given per-step times (ms)."""
    results = {"adabin_resnet20": {"samples_ms": {"float32": float32, "mixed_bfloat16": bfloat16}}}
    _results.write("train_step_mixed_bfloat16", {"rounds": 1, "steps": 3, "results": results},
                   _results.environment(__file__, []), directory=tmp_path)
    return report.Results(tmp_path)


def test_rendered_table_uses_the_stored_samples(tmp_path):
    """Hand-derived: steps of 100, 200, 300 ms have median 200 and quartiles 150 and 250
    (inclusive method); 60, 100, 180 ms give 100 (80-140); speed-ups 200 / 100 of the
    medians and 150 / 80 of the lower quartiles."""
    results = _policy_record(tmp_path, [300.0, 100.0, 200.0], [100.0, 60.0, 180.0])
    text = report.render_policy(results, "mixed_bfloat16")
    assert "| `adabin_resnet20` | 200 (150-250) | 100 (80-140) | **2.00x** / 1.88x |" in text
    precision = report.render_precision(results)  # the README's summary of the same record
    assert "| 2.00x faster than float32 (measured) |" in precision
    assert f"Measured on {report.cpu_name(results['train_step_mixed_bfloat16'])}" in precision


def test_a_number_edited_by_hand_fails_the_check_and_is_rendered_back(tmp_path, capsys):
    results = tmp_path / "results"
    _policy_record(results, [300.0, 100.0, 200.0], [100.0, 60.0, 180.0])
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    readme = root / "README.md"
    readme.write_text("intro\n<!-- generated: precision -->\n| 1.99x faster |\n"
                      "<!-- end generated -->\nrest\n")
    flags = ["--results", str(results), "--root", str(root)]
    assert report.main(["--check", *flags]) == 1
    assert "README.md" in capsys.readouterr().err and "1.99x" in readme.read_text()
    assert report.main(flags) == 0  # renders
    text = readme.read_text()
    assert "1.99x" not in text and "2.00x faster" in text
    assert text.startswith("intro\n<!-- generated: precision -->\n")
    assert text.endswith("<!-- end generated -->\nrest\n")
    assert (root / "docs" / "benchmarks.md").read_text().startswith("# Benchmarks")
    assert report.main(["--check", *flags]) == 0


def test_missing_results_are_rendered_as_not_measured(tmp_path):
    empty = report.Results(tmp_path)
    for name, _, _, _, render in report.SECTIONS:
        assert report.NOT_MEASURED in render(empty), name
    for name, render in report.BLOCKS.items():
        if name != "results":  # paper figures only: "not reproduced here" rows
            assert report.NOT_MEASURED in render(empty), name
    assert "not reproduced here" in report.BLOCKS["results"](empty)


def test_unknown_block_is_one_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown generated block 'speeed'"):
        report.render_blocks("<!-- generated: speeed -->\n<!-- end generated -->", report.Results(tmp_path))


def test_readme_is_a_product_page_with_every_generated_block():
    text = (REPO / "README.md").read_text()
    blocks = [match.group(2) for match in report.BLOCK.finditer(text)]
    assert sorted(blocks) == sorted(report.BLOCKS)  # each once, each closed
    assert text.count("<!-- generated:") == len(blocks)
    sections = re.findall(r"(?m)^## (.+)$", text)
    order = ["Quickstart", "Install", "Usage", "Models", "Results", "Training",
             "Choosing a precision", "Deployment", "How the code is organised", "Glossary",
             "Security: loading files"]
    assert [title for title in sections if title in order] == order, sections


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda path: path.name)
def test_user_docs_hold_no_dates_or_issue_numbers(path):
    """Docs say what is true now: dates live in docs/benchmarks.md's generated environment
    lines and in CHANGELOG.md, issue numbers nowhere."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if path.name == "benchmarks.md" and line.startswith("*Environment:*"):
            continue
        assert not re.search(r"\b20\d\d-[01]\d-[0-3]\d\b", line), f"{path.name}:{number}: {line}"
        assert not re.search(r"\b[Ii]ssues? #?\d+", line), f"{path.name}:{number}: {line}"
