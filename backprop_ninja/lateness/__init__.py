"""Due dates and late penalties, one rule for nbgrader and for the kit's batch.

    rule.py            how late, and what it costs (pure arithmetic)
    times.py           reading dates and durations, writing them for people and for CSV
    settings.py        c.Lateness in nbgrader_config.py: the one place the policy is set, checked
    nbgrader_side.py   the rule inside nbgrader (a preprocessor and nbgrader's late-submission plugin)
    submitted.py       the batch: when each student handed in (timestamp.txt or a CSV of times)
    columns.py         the batch: grades.csv's lateness columns
"""

CONFIG_NAME = "nbgrader_config.py"  # where c.Lateness is set; here so that naming it imports nothing heavy
