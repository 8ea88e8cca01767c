"""`kenprune report A B C`: among several paths, those that are not run folders are skipped in one line."""
import pytest

from kenprune import record as rec
from kenprune.cli import main
from tests.report.conftest import prune_record


@pytest.fixture
def demo_folder(tmp_path):
    """Like kenprune-demo/ after its report: run folders beside report.html and report-figures/."""
    demo = tmp_path / "kenprune-demo"
    for method in ("magnitude", "wanda"):
        (demo / method).mkdir(parents=True)
        rec.write(prune_record(method), demo / method)
    (demo / "report.html").write_text("<html></html>")
    (demo / "report-figures").mkdir()
    return demo


def test_non_run_paths_among_several_are_skipped_with_one_line(demo_folder, tmp_path, capsys):
    paths = sorted(str(p) for p in demo_folder.iterdir())
    assert main(["report", *paths, "--out", str(tmp_path / "sweep.html")]) == 0
    captured = capsys.readouterr()
    skipped = [line for line in captured.err.splitlines() if "skipped" in line]
    assert len(skipped) == 1
    assert f"{demo_folder / 'report.html'} (a file)" in skipped[0]
    assert f"{demo_folder / 'report-figures'} (no run.json)" in skipped[0]
    assert (tmp_path / "sweep.html").is_file() and "report written" in captured.out


@pytest.mark.parametrize("name", ["report.html", "report-figures"])
def test_a_single_non_run_path_stays_an_error(demo_folder, name, capsys):
    assert main(["report", str(demo_folder / name)]) == 2
    assert capsys.readouterr().err.startswith("kenprune: error:")


def test_no_run_folder_among_several_is_an_error(demo_folder, capsys):
    assert main(["report", str(demo_folder / "report.html"), str(demo_folder / "report-figures")]) == 2
    assert capsys.readouterr().err.startswith("kenprune: error:")
