"""The notebooks run top to bottom on a small pipeline output and show what they promise.

Each notebook's first code cell (tagged ``parameters``) holds its settings; the test inserts a
cell right after it with its own values, as papermill does, and runs the notebook in the
project's ``python3`` kernel (ipykernel from this virtual environment).
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
RUN_DATE = "2026-11-28"
EVENTS = 3000
K = 10


def run_notebook(name: str, parameters: dict[str, Any], probe: str) -> tuple[Any, Any]:
    """Execute ``notebooks/<name>.ipynb`` with ``parameters``, then ``probe`` (a cell that prints
    one JSON line); return the executed notebook and the probe's JSON."""
    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
    assignments = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(assignments))
    notebook.cells.append(nbformat.v4.new_code_cell(probe))
    NotebookClient(
        notebook, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(ROOT)}}
    ).execute()
    printed = [o["text"] for o in notebook.cells[-1].outputs if o.get("output_type") == "stream"]
    return notebook, json.loads("".join(printed).strip().splitlines()[-1])


def outputs_of(notebook: Any, mime: str) -> list[Any]:
    return [
        output["data"][mime]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if mime in output.get("data", {})
    ]


@pytest.fixture(scope="module")
def scored(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated events built into sequences, a one-epoch SASRec, and its scores in Delta."""
    from seqrec import schemas
    from seqrec.io import layout, tables
    from seqrec.serve import scoring
    from seqrec.spark import ship_folder
    from seqrec.train.launch import run_distributed
    from tests.helpers import built_synthetic_and_train_config

    root = tmp_path_factory.mktemp("notebooks")
    data_dir, config = built_synthetic_and_train_config(spark, root, RUN_DATE, EVENTS)
    model_dir = Path(run_distributed(config)["checkpoint"])
    users = tables.read_parquet(spark, layout.sequences(layout.resolve(str(data_dir))))
    scores = scoring.score_users(users, ship_folder(spark, model_dir, "model"), k=K)
    table = root / "recommendations"
    tables.merge_delta(
        scoring.with_lineage(scores, "seqrec-recommender", "7", RUN_DATE, f"{RUN_DATE} 03:00:00"),
        str(table),
        schemas.USER_ID,
    )
    results = root / "beauty.json"
    # The shape of benchmarks/beauty.py's last line; the values are test data, not results.
    results.write_text(
        json.dumps({"sasrec": {"recall@10": 0.0123, "ndcg@10": 0.0045, "mrr": 0.004}}) + "\n"
    )
    # Two measured days of an online test, as jobs/measure.py writes them (test data).
    metrics = root / "recommendation_metrics"
    rows = [
        (day, version, arm, metric, value)
        for day, shift in ((date(2026, 11, 27), 0.0), (date(2026, 11, 28), 0.01))
        for version, arm, base in (("7", "champion", 0.10), ("8", "challenger", 0.15))
        for metric, scale in (("ctr", 1.0), ("conversion", 0.1), ("hit_rate", 3.0))
        for value in [round((base + shift) * scale, 6)]
    ]
    rows += [(d, "8", "difference", m, 0.05) for d, *_ in rows[:1] for m in ("ctr",)]
    rows += [(d, "all", "all", "ctr", 0.11) for d, *_ in rows[:1]]
    computed = datetime(2026, 11, 29, tzinfo=UTC)
    frame = spark.createDataFrame(
        [
            (
                day,
                "seqrec-recommender",
                version,
                arm,
                metric,
                value,
                value - 0.01,
                value + 0.01,
                0.01 if arm == "difference" else None,
                40,
                80,
                computed,
            )
            for day, version, arm, metric, value in rows
        ],  # fmt: skip
        schemas.RECOMMENDATION_METRICS,
    )
    tables.merge_delta(frame, str(metrics), list(schemas.METRICS_KEY))
    return {"data": data_dir, "table": table, "results": results, "metrics": metrics}


def test_exploration_notebook_shows_statistics_sessions_and_funnel(spark, scored) -> None:
    from pyspark.sql import functions as F

    from seqrec import schemas
    from seqrec.io import layout

    notebook, seen = run_notebook(
        "exploration",
        {"DATA_DIR": str(scored["data"]), "SPARK_MASTER": "local[2]"},
        "import json, sys\n"
        "print(json.dumps({\n"
        '    "prefix": sys.prefix,\n'
        '    "users": int(stats.loc["users", "value"]),\n'
        '    "events": int(stats.loc["events", "value"]),\n'
        '    "sessions": int(stats.loc["sessions", "value"]),\n'
        '    "session_events": int((session_lengths["events_in_session"]'
        ' * session_lengths["sessions"]).sum()),\n'
        '    "funnel": funnel["sessions"].tolist(),\n'
        '    "funnel_steps": funnel["step"].tolist(),\n'
        "}))",
    )
    assert seen["prefix"] == sys.prefix  # the kernel runs this virtual environment's python
    sequences = spark.read.parquet(layout.sequences(layout.resolve(str(scored["data"]))))
    expected = sequences.agg(
        F.count(F.lit(1)).alias("users"),
        F.sum(schemas.SEQ_LEN).alias("events"),
        F.sum(F.size(F.array_distinct(schemas.SEQ_SESSIONS))).alias("sessions"),
    ).first()
    assert seen["users"] == expected["users"] > 50
    assert seen["events"] == expected["events"] == seen["session_events"]
    assert seen["sessions"] == expected["sessions"]
    assert seen["funnel_steps"] == ["all sessions", "view", "cart", "purchase"]
    steps = seen["funnel"]
    assert steps[0] == expected["sessions"]
    assert steps == sorted(steps, reverse=True) and steps[-1] > 0  # a funnel narrows
    assert len(outputs_of(notebook, "image/png")) == 2  # session lengths; types and funnel
    assert any("events per session" in html for html in outputs_of(notebook, "text/html"))


def test_results_notebook_compares_with_published_and_shows_titled_recommendations(
    spark, scored
) -> None:
    notebook, seen = run_notebook(
        "results",
        {
            "RESULTS_JSON": str(scored["results"]),
            "DATA_DIR": str(scored["data"]),
            "TABLE": str(scored["table"]),
            "METRICS_TABLE": str(scored["metrics"]),
            "N_USERS": 3,
            "N_RECS": 5,
            "SPARK_MASTER": "local[2]",
        },
        "import json\n"
        "print(json.dumps({\n"
        '    "comparison": comparison[["method", "origin", "ndcg@10"]].values.tolist(),\n'
        '    "examples": examples[["user_id", "rank", "title", "model_version", "run_date"]]'
        ".astype(str).values.tolist(),\n"
        '    "curves": curves,\n'
        '    "daily_arms": sorted(set(daily["arm"])),\n'
        "}))",
    )
    comparison = {method: (origin, ndcg) for method, origin, ndcg in seen["comparison"]}
    assert comparison["seqrec sasrec"] == ("ours", 0.0045)
    assert comparison["SASRec (BCE, 1 negative)"] == ("published", 0.0318)
    assert sum(origin == "published" for origin, _ in comparison.values()) == 8

    first_users = [
        r["user_id"]
        for r in spark.read.format("delta")
        .load(str(scored["table"]))
        .orderBy("user_id")
        .limit(3)
        .collect()
    ]
    examples = seen["examples"]
    assert sorted({row[0] for row in examples}) == first_users
    assert [row[1] for row in examples] == [str(r) for r in range(1, 6)] * 3
    assert all(row[2] not in ("None", "nan", "") for row in examples)  # every item has a title
    assert {(row[3], row[4]) for row in examples} == {("7", RUN_DATE)}
    # The daily online curves: one per metric, version and arm, in day order; the "all" rows
    # stay out of the plot and the difference rows are only in the table.
    assert seen["curves"] == {
        "ctr v7 champion": [0.1, 0.11],
        "ctr v8 challenger": [0.15, 0.16],
        "conversion v7 champion": [0.01, 0.011],
        "conversion v8 challenger": [0.015, 0.016],
        "hit_rate v7 champion": [0.3, 0.33],
        "hit_rate v8 challenger": [0.45, 0.48],
    }
    assert seen["daily_arms"] == ["challenger", "champion", "difference"]
    assert len(outputs_of(notebook, "image/png")) == 2
