"""The late rule inside nbgrader, through nbgrader's own mechanism (wired up in nbgrader_config.py):

    SyncDueDate          a preprocessor right before nbgrader's AssignLatePenalties: writes c.Lateness.due into the
                         gradebook as the assignment's due date and the student's extension as the submission's
                         extension, so nbgrader's own seconds late (and the Formgrader) follow the one config
    CourseLatePenalty    the plugin of AssignLatePenalties (c.AssignLatePenalties.plugin_class): the points that
                         many seconds late cost, by lateness/rule.py

nbgrader calls the plugin only when its gradebook says the submission is late, and stores what it returns as the
notebook's late_submission_penalty (its score, export and Formgrader then subtract it).
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import NbGraderPreprocessor

from backprop_ninja.lateness.rule import penalty_points, student_due
from backprop_ninja.lateness.settings import CoursePolicy, course_policy


def _policy(configurable) -> CoursePolicy | None:
    """The course's checked policy; relative files are read from the course folder (nbgrader's root)."""
    root = Path(CourseDirectory(config=configurable.config).root)
    return course_policy(configurable.config, root)


def _naive_utc(moment: datetime) -> datetime:
    """The gradebook stores naive UTC times."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


class SyncDueDate(NbGraderPreprocessor):
    """Put the configured due date and this student's extension into the gradebook before nbgrader reads them."""

    def preprocess(self, nb, resources):
        policy = _policy(self)
        if policy is None:  # no c.Lateness.due: the gradebook's own due date (if any) stays as it is
            return nb, resources
        info = resources["nbgrader"]
        due = _naive_utc(policy.due)
        own_due = _naive_utc(student_due(policy.due, policy.extension_for(info["student"])))
        with Gradebook(info["db_url"]) as gradebook:
            assignment = gradebook.find_assignment(info["assignment"])
            submission = gradebook.find_submission(info["assignment"], info["student"])
            if assignment.duedate not in (None, due):
                self.log.warning("Due date of %s changed from %s to %s (c.Lateness.due)", info["assignment"],
                                 assignment.duedate, due)
            assignment.duedate = due
            submission.extension = own_due - due if own_due != due else None
            gradebook.db.commit()
        return nb, resources


class CourseLatePenalty(LateSubmissionPlugin):
    """Points lost for lateness, by the course's rule, as a fraction of the notebook's maximum points."""

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> float | None:
        policy = _policy(self)
        if policy is None:
            self.log.warning("%s is late but c.Lateness.due is not set in nbgrader_config.py: no penalty", student_id)
            return None
        steps = self.parent  # nbgrader's AssignLatePenalties, which has the gradebook open
        notebook = steps.gradebook.find_submission_notebook(steps.notebook_id, steps.assignment_id, student_id)
        penalty = penalty_points(total_seconds_late, score, notebook.max_score, policy.policy)
        self.log.info("%s is %s late: penalty %s of %s points", student_id,
                      timedelta(seconds=round(total_seconds_late)), penalty, notebook.max_score)
        return penalty
