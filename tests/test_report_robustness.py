"""The HTML report's robustness section, from literal immunity reports (no training)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from twinkit.report.html import robustness_html, write_report

HOSTILE = "<script>alert(1)</script>"


def _row(page: str, first: str) -> list[str]:
    """The cells of the table row whose header cell is ``first`` (first such row)."""
    match = re.search(rf"<tr><th>{re.escape(first)}</th>(.*?)</tr>", page)
    assert match, f"no row {first!r}"
    return re.findall(r"<td>(.*?)</td>", match.group(1))


def _classifier(**changes: Any) -> dict[str, Any]:
    report: dict[str, Any] = {
        "clean_acc": 0.9461,
        "clean_acc_vaccinated": 0.932,
        "clean_acc_adv_trained": None,
        "vaccine_samples": 300,
        "attacks": {
            "fgsm": {
                "0.2": {
                    "undefended": 0.1,
                    "vaccinated_replay": 0.75,
                    "vaccinated_adaptive": 0.5,
                    "adv_trained_adaptive": None,
                },
                "0.1": {
                    "undefended": 0.4,
                    "vaccinated_replay": 0.8,
                    "retrained_replay": 0.02,
                    "vaccinated_adaptive": 0.6,
                    "adv_trained_adaptive": None,
                },
            },
            "pgd": {
                "0.1": {
                    "undefended": 0.05,
                    "vaccinated_replay": 0.7,
                    "vaccinated_adaptive": 0.3,
                    "adv_trained_adaptive": None,
                }
            },
        },
        "poisoning": None,
        "threat_model": {"norm": "linf", "eps": [0.1, 0.2], "pgd_steps": 40, "adv_training": None},
        "model": {"kind": "mlp", "image_shape": None, "hidden": [64]},
        "data": {"n_train": 800, "n_test": 200, "n_features": 64, "classes": ["0", HOSTILE]},
        "seed": 7,
    }
    report.update(changes)
    return report


def _forecast(**changes: Any) -> dict[str, Any]:
    model = {
        "clean_rmse": {"30": 18.14, "60": 30.2},
        "clean_rmse_vaccinated": {"30": 18.3, "60": None},
        "attacks": {
            "error": {
                "undefended": {"30": 25.0, "60": 41.06},
                "vaccinated_replay": {"30": 20.0, "60": 35.0},
                "vaccinated_adaptive": None,
            },
            "hide_low": {
                "threshold": 70.0,
                "lows": 40,
                "flagged_clean": 0.6,
                "flagged_undefended": 0.125,
                "flagged_vaccinated_clean": 0.55,
                "flagged_vaccinated_replay": 0.3,
                "flagged_vaccinated_adaptive": None,
            },
        },
        "origins": 400,
        "twins": 5,
    }
    report: dict[str, Any] = {
        "kind": "forecast",
        "target": "glucose",
        "horizons_min": [30, 60],
        "seed": 0,
        "data": {"twins": 5, "rows": 12345},
        "threat_model": {"budget": 10.0, "range": [40.0, 400.0], "steps": 3},
        "vaccine": {"copies": 2},
        "models": {
            "linear_ar": model,
            HOSTILE: {"clean_rmse": {"30": 1.0}, "attacks": {"error": None}},
        },
    }
    report.update(changes)
    return report


def test_classifier_section_tables_and_chart() -> None:
    page = robustness_html(_classifier())
    assert page.startswith("<section id='robustness'>")
    assert "<h2>Robustness</h2>" in page
    assert page.rstrip().endswith("</section>")
    # accuracy per attack and eps, rows sorted by eps, None -> "-"
    assert _row(page, "fgsm") == ["0.1", "40.0%", "80.0%", "2.0%", "60.0%", "-"]
    assert "<td>0.2</td><td>10.0%</td><td>75.0%</td><td>-</td><td>50.0%</td><td>-</td>" in page
    assert page.index("<td>0.1</td><td>40.0%") < page.index("<td>0.2</td><td>10.0%")
    assert _row(page, "pgd") == ["0.1", "5.0%", "70.0%", "-", "30.0%", "-"]
    # clean accuracies and the vaccine
    assert _row(page, "clean accuracy") == ["94.6%"]
    assert _row(page, "clean accuracy, vaccinated") == ["93.2%"]
    assert _row(page, "clean accuracy, adv. trained") == ["-"]
    assert _row(page, "vaccine samples") == ["300"]
    # model / data / threat model as key-value rows, nested values as JSON
    assert _row(page, "norm") == ["linf"]
    assert _row(page, "eps") == ["[0.1, 0.2]"]
    assert _row(page, "hidden") == ["[64]"]
    assert _row(page, "n_train") == ["800"]
    # one chart with an axes per attack; no poisoning table when poisoning is None
    assert page.count("<svg") == 1
    assert page.count('id="axes_') == 2
    assert "poisoning" not in page


def test_classifier_poisoning_table() -> None:
    poisoning = {
        "label_flip_0.1": {
            "recall": 0.9,
            "false_quarantine": 0.02,
            "acc_clean": 0.95,
            "acc_poisoned": 0.8,
            "acc_screened": 0.93,
        },
        "backdoor": {
            "asr_poisoned": 0.99,
            "asr_screened": 0.05,
            "recall": 1.0,
            "false_quarantine": None,
            "acc_screened": 0.94,
        },
    }
    page = robustness_html(_classifier(poisoning=poisoning))
    head = re.search(r"<tr><th>poisoning</th>(.*?)</tr>", page)
    assert head
    columns = re.findall(r"<th>(.*?)</th>", head.group(1))
    assert columns[:2] == ["recall", "false_quarantine"]
    assert set(columns) == {
        "recall",
        "false_quarantine",
        "acc_clean",
        "acc_poisoned",
        "acc_screened",
        "asr_poisoned",
        "asr_screened",
    }
    flip = dict(zip(columns, _row(page, "label_flip_0.1"), strict=True))
    assert flip["recall"] == "90.0%"
    assert flip["false_quarantine"] == "2.0%"
    assert flip["asr_poisoned"] == "-"  # not measured for label flips
    door = dict(zip(columns, _row(page, "backdoor"), strict=True))
    assert door["asr_poisoned"] == "99.0%"
    assert door["recall"] == "100.0%"
    assert door["false_quarantine"] == "-"


def test_poisoning_by_seed_table() -> None:
    by_seed = {
        "label_flip_0.1": {
            "training_seeds": [0, 1, 2],
            "acc_clean": [0.948, 0.949, 0.945],
            "acc_screened": [0.918, 0.945, 0.938],
        }
    }
    page = robustness_html(_classifier(poisoning_by_seed=by_seed))
    assert "<caption>label_flip_0.1: by training seed</caption>" in page
    assert _row(page, "training_seeds") == ["[0, 1, 2]"]
    assert _row(page, "acc_screened") == ["[0.918, 0.945, 0.938]"]
    assert "by training seed" not in robustness_html(_classifier())


def test_thresholded_adv_trained_table_by_attack() -> None:
    checked = {"0.3": {"pgd_bpda": 0.91, "square": 0.875}, "0.1": {"pgd_bpda": 0.97}}
    page = robustness_html(_classifier(adv_trained_by_attack=checked))
    assert "accuracy under each attack alone</caption>" in page
    assert _row(page, "0.3") == ["91.0%", "87.5%"]
    assert _row(page, "0.1") == ["97.0%", "-"]
    assert page.index("<th>0.1</th>") < page.index("<th>0.3</th>")
    assert "each attack alone" not in robustness_html(_classifier(adv_trained_by_attack=None))


def test_adv_trained_line_only_when_present() -> None:
    attacks = {
        "pgd": {
            "0.1": {
                "undefended": 0.2,
                "vaccinated_replay": 0.5,
                "vaccinated_adaptive": 0.4,
                "adv_trained_adaptive": 0.7,
            }
        }
    }
    with_adv = robustness_html(_classifier(attacks=attacks, clean_acc_adv_trained=0.9))
    without = robustness_html(_classifier(attacks={"pgd": {"0.1": {"undefended": 0.2}}}))
    assert _row(with_adv, "pgd")[-1] == "70.0%"
    assert _row(with_adv, "clean accuracy, adv. trained") == ["90.0%"]
    assert _row(without, "pgd") == ["0.1", "20.0%", "-", "-", "-", "-"]
    lines = re.compile(r'id="line2d_')
    assert len(lines.findall(with_adv)) > len(lines.findall(without))


def test_forecast_section() -> None:
    page = robustness_html(_forecast())
    assert page.startswith("<section id='robustness'>")
    assert "<svg" not in page
    assert "RMSE (glucose)" in page
    rows = re.findall(r"<tr><th>linear_ar</th>(.*?)</tr>", page)
    cells = [re.findall(r"<td>(.*?)</td>", r) for r in rows]
    # rows: model x horizon; clean, undefended, vaccinated clean / replay / adaptive
    assert cells[0] == ["30", "18.1", "25.0", "18.3", "20.0", "-"]
    assert cells[1] == ["60", "30.2", "41.1", "-", "35.0", "-"]
    # hide-low: threshold, lows, flagged shares as percentages
    assert cells[2] == ["70.0", "40", "60.0%", "12.5%", "55.0%", "30.0%", "-"]
    assert len(cells) == 3
    # threat model and data
    assert _row(page, "budget") == ["10.0"]
    assert _row(page, "range") == ["[40.0, 400.0]"]
    assert _row(page, "rows") == ["12345"]
    assert _row(page, "copies") == ["2"]


def test_forecast_without_hide_low_or_lows() -> None:
    report = _forecast()
    del report["models"][HOSTILE]
    del report["models"]["linear_ar"]["attacks"]["hide_low"]
    assert "hide-low" not in robustness_html(report)
    report["models"]["linear_ar"]["attacks"]["hide_low"] = {
        "threshold": 70.0,
        "lows": 0,
        "flagged_clean": None,
        "flagged_undefended": None,
        "flagged_vaccinated_replay": None,
        "flagged_vaccinated_adaptive": None,
    }
    rows = re.findall(r"<tr><th>linear_ar</th>(.*?)</tr>", robustness_html(report))
    # lows == 0 and no flagged_vaccinated_clean: every share is "-"
    assert re.findall(r"<td>(.*?)</td>", rows[-1]) == ["70.0", "0", "-", "-", "-", "-", "-"]


def test_hostile_names_are_escaped() -> None:
    hostile_attacks = {HOSTILE: {"0.1": {"undefended": 0.5}}}
    for page in (
        robustness_html(_classifier(attacks=hostile_attacks)),
        robustness_html(_forecast()),
    ):
        assert "<script" not in page
        assert "&lt;script&gt;" in page


def test_write_report_with_robustness_only(tmp_path: Path) -> None:
    path = write_report(
        tmp_path / "out" / "report.html", "immunity", sections=[], robustness=_classifier()
    )
    text = path.read_text(encoding="utf-8")
    assert "<section id='robustness'>" in text
    assert "94.6%" in text
    assert "<svg" in text
    assert "<script" not in text
    assert text.index("<h1>immunity</h1>") < text.index("<section id='robustness'>")
    assert text.rstrip().endswith("</body></html>")


def test_write_report_without_robustness_has_no_section(tmp_path: Path) -> None:
    text = write_report(tmp_path / "r.html", "t", sections=[], summary="s").read_text()
    assert "robustness" not in text
    assert "<p class='note'>s</p>" in text
