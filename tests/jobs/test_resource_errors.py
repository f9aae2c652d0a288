"""A job that runs out of memory or disk space says so, in one paragraph with status 7, instead
of blaming the input (the 100 M-event build's OutOfMemoryError was once reported as "cannot be
read as canonical-csv input") or ending in a traceback of py4j frames when the JVM exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.errors import PySparkException

from seqrec import errors

ROOT = Path(__file__).resolve().parents[2]
HEADER = "user_id,item_id,event_time,event_type,session_id,category,price,text\n"

# What Spark raised when a task of the 100 M build's input stage ran out of heap (its first
# line as Py4J gave it, then the start of the JVM stack).
TASK_OOM = (
    "An error occurred while calling o245.collectToPython.\n"
    ": org.apache.spark.SparkException: Job aborted due to stage failure: Task 45 in stage 3.0 "
    "failed 1 times, most recent failure: Lost task 45.0 in stage 3.0 (TID 121) (localhost "
    "executor driver): java.lang.OutOfMemoryError: Java heap space\n"
    "\tat java.base/java.nio.HeapByteBuffer.<init>(HeapByteBuffer.java:64)\n"
)
DISK_FULL = (
    "Job aborted due to stage failure: Task 3 in stage 7.0 failed 4 times, most recent failure: "
    "Lost task 3.3 in stage 7.0 (TID 40) (10.0.0.5 executor 2): java.io.IOException: No space "
    "left on device\n\tat java.base/java.io.FileOutputStream.writeBytes(Native Method)\n"
)
YARN_KILLED = (
    "Job aborted due to stage failure: Task 9 in stage 2.0 failed 4 times, most recent failure: "
    "Lost task 9.3 in stage 2.0 (TID 31) (node7 executor 5): ExecutorLostFailure (executor 5 "
    "exited caused by one of the running tasks) Reason: Container killed by YARN for exceeding "
    "physical memory limits. 6.1 GB of 6 GB physical memory used. Consider boosting "
    "spark.executor.memoryOverhead.\n"
)


def test_a_task_out_of_memory_is_named_with_its_task_and_what_to_change() -> None:
    found = errors.resource_failure(
        PySparkException(message=TASK_OOM), "reading and checking the canonical-csv input"
    )
    assert isinstance(found, errors.ResourceError) and found.exit_code == 7
    message = str(found)
    assert message.startswith(
        "Spark ran out of memory while reading and checking the canonical-csv input (task 45 in "
        "stage 3.0): java.lang.OutOfMemoryError: Java heap space. This is not a problem of the "
        "input; give the JVM that failed more memory"
    ), message
    assert "--driver-memory" in message and "spark.executor.memory" in message
    assert "\n" not in message and "HeapByteBuffer" not in message


def test_a_full_disk_and_a_killed_container_are_named_too() -> None:
    disk = str(errors.resource_failure(PySparkException(message=DISK_FULL)))
    assert disk.startswith(
        "Spark ran out of disk space (task 3 in stage 7.0): java.io.IOException: No space left "
        "on device. "
    ), disk
    assert "spark.local.dir" in disk
    killed = str(errors.resource_failure(PySparkException(message=YARN_KILLED)))
    assert killed.startswith(
        "Spark ran out of memory (task 9 in stage 2.0): Container killed by YARN for exceeding "
        "physical memory limits. 6.1 GB of 6 GB physical memory used. Consider boosting "
        "spark.executor.memoryOverhead. This is not"
    ), killed


def test_a_heap_too_small_to_start_spark_is_named() -> None:
    # What Spark 4.2 raised for spark-submit --driver-memory 400m (the first two lines).
    refused = (
        "An error occurred while calling None.org.apache.spark.api.java.JavaSparkContext.\n"
        ": org.apache.spark.SparkIllegalArgumentException: [INVALID_DRIVER_MEMORY] System memory "
        "419430400 must be at least 471859200.\nPlease increase heap size using the "
        '--driver-memory option or "spark.driver.memory" in Spark configuration. SQLSTATE: F0000'
    )
    assert str(errors.resource_failure(PySparkException(message=refused))) == (
        "Spark was given too little memory to start its driver: System memory 419430400 must be "
        "at least 471859200. Give it at least 1g (spark-submit --driver-memory 1g, or "
        "spark.driver.memory), and run the job again."
    )


def test_a_context_stopped_under_the_job_is_the_jvm_exiting() -> None:
    """Spark's handler of an uncaught OutOfMemoryError stops the context before the JVM exits;
    a call that reaches the JVM in between gets one of these answers instead of losing py4j."""
    answers = (
        # what the canonical-csv check got while the 600 MiB JVM below was exiting
        "An error occurred while calling o87.collectToPython.\n: java.lang.NullPointerException: "
        'Cannot invoke "org.apache.spark.scheduler.DAGScheduler.cleanupQueryJobs(long)" because '
        'the return value of "org.apache.spark.SparkContext.dagScheduler()" is null',
        "java.lang.IllegalStateException: Cannot call methods on a stopped SparkContext.",
        "org.apache.spark.SparkException: Job 3 cancelled because SparkContext was shut down",
    )
    for answer in answers:
        found = errors.resource_failure(PySparkException(message=answer), "reading the input")
        assert isinstance(found, errors.ResourceError), answer
        assert str(found).startswith(
            "Spark's JVM exited in the middle of the job while reading the input: the lines above"
        )


def test_other_failures_are_not_resource_errors() -> None:
    # The words alone, outside a Spark error, are not Spark running out of anything.
    assert errors.resource_failure(ValueError("java.lang.OutOfMemoryError")) is None
    malformed = "Job aborted due to stage failure: java.io.EOFException: Unexpected end of input"
    assert errors.resource_failure(PySparkException(message=malformed)) is None


def test_a_job_that_ran_out_of_memory_ends_in_one_paragraph_with_status_7(capsys) -> None:
    def main(argv: list[str] | None) -> int:
        raise PySparkException(message=TASK_OOM)

    with pytest.raises(SystemExit) as exit_info:
        errors.run(main, [])
    err = capsys.readouterr().err
    assert exit_info.value.code == 7 and len(err.splitlines()) == 1, err
    assert "error: Spark ran out of memory (task 45 in stage 3.0)" in err

    def bug(argv: list[str] | None) -> int:  # any other Spark error is still a bug
        raise PySparkException(message="[INTERNAL_ERROR] something else")

    with pytest.raises(PySparkException, match="INTERNAL_ERROR"):
        errors.run(bug, [])


@pytest.mark.slow
def test_a_build_whose_jvm_dies_of_a_huge_line_says_so(tmp_path: Path) -> None:
    """A real JVM with a 600 MiB heap and a 300 MB line: Spark's handler of uncaught errors
    exits the JVM in the middle of the input stage, and py4j loses its connection."""
    events = tmp_path / "events.csv"
    with events.open("w") as out:
        out.write(HEADER)
        out.write("u1,i1,2026-11-01T10:00:00Z,view,,,,short\n")
        out.write("u1,i2,2026-11-01T10:01:00Z,view,,,," + "x" * 300_000_000 + "\n")
    output = tmp_path / "out"
    env = {**os.environ, "PYSPARK_SUBMIT_ARGS": "--driver-memory 600m pyspark-shell"}
    env.pop(errors.DEBUG_ENV, None)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "jobs" / "build_sequences.py"),
            *("--source", "canonical-csv", "--input", str(events), "--output", str(output)),
            *("--run-date", "2026-11-28", "--no-item-vectors"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 7, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Py4JNetworkError" not in done.stderr
    assert "java.lang.OutOfMemoryError" in done.stderr  # the JVM's own line, above the paragraph
    last = done.stderr.strip().splitlines()[-1]
    # py4j may lose the JVM (the job's own paragraph), or the input check may reach a context
    # that is stopping (the same paragraph, saying what the job was doing)
    assert last.startswith("[build_sequences] error: Spark's JVM exited in the middle of the job")
    assert "the lines above this one say why." in last, last
    assert "--driver-memory" in last
    assert not output.exists()  # nothing was published


def test_py4j_logging_a_lost_jvm_on_the_root_logger_is_dropped_in_a_job(capsys) -> None:
    """py4j logs "Exception while sending command." with its traceback on the root logger when
    the JVM went away, which prints on stderr above the job's paragraph; only that is dropped."""
    import logging

    def record(path: str, message: str) -> logging.LogRecord:
        return logging.LogRecord("root", logging.ERROR, path, 1, message, None, None)

    root = logging.getLogger()
    sent = "Exception while sending command."
    with pytest.raises(SystemExit):
        errors.run(lambda argv: 0, [])
    try:
        assert not root.filter(record("/site-packages/py4j/java_gateway.py", sent))
        assert root.filter(record("/site-packages/py4j/java_gateway.py", "something else"))
        assert root.filter(record("/work/lib/mine.py", sent))
    finally:
        root.removeFilter(errors._not_py4j_send_failure)
