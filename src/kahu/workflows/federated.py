"""The built-in federated study: each site counts its cohort's series by modality, body part
and manufacturer (and sums up one SEG segment's volume), suppressing small cells under its own
policy's k; the coordinator adds up what the sites released."""

from __future__ import annotations

from kahu.flow import Output, Workflow
from kahu.operators import aggregate_statistics, cohort_statistics

SITE = Workflow(
    name="cohort-statistics",
    version="1.0",
    title="Cohort statistics (federated)",
    description=(
        "Counts the cohort's series by Modality, BodyPartExamined and Manufacturer and, given "
        "seg_label, the number, mean and standard deviation of that SEG segment's volume in "
        "millilitres. Counts below min_cell_count are not released (a site's policy sets the "
        "least k it accepts). Run across sites with `kahu federation run`; the coordinator "
        "adds the sites' results up with cohort-statistics-aggregate."
    ),
    parameters={
        "type": "object",
        "properties": {
            "min_cell_count": {
                "type": "integer",
                "minimum": 1,
                "default": 5,
                "description": "Counts below this are suppressed (a site may raise it)",
            },
            "seg_label": {
                "type": "string",
                "maxLength": 64,
                "description": "A SEG segment label whose volume to summarize",
            },
        },
        "additionalProperties": False,
    },
    results_may_leave=True,
    operators=(cohort_statistics(),),
    outputs=(Output("statistics", "statistics", "statistics.json", "json", 256 * 1024),),
    aggregate="cohort-statistics-aggregate",
    partial_aggregation=True,
)

AGGREGATE = Workflow(
    name="cohort-statistics-aggregate",
    version="1.0",
    title="Cohort statistics: aggregation",
    description=(
        "At the coordinator of a federated cohort-statistics run: adds up the counts each "
        "site released and pools the segment volumes; the result is aggregate.json in the "
        "run's folder and in the project's object store (bucket federation)."
    ),
    parameters={
        "type": "object",
        "properties": {
            "federated_run": {
                "type": "string",
                "pattern": "^fed-[A-Za-z0-9._-]{1,90}$",
                "description": "The federated run whose outputs to aggregate",
            }
        },
        "required": ["federated_run"],
        "additionalProperties": False,
    },
    operators=(aggregate_statistics(),),
)

WORKFLOWS = [SITE, AGGREGATE]
