"""The experiment spec: pydantic models, `load_spec`, and expansion into trials.

    $ effray validate experiments/quickstart.yaml --set train.lr=0.1

A spec is validated completely before anything starts; every problem becomes one
line `field.path: message (value …; allowed …; did you mean …)`.

Modules: schema (the models), messages (error rendering), load (load_spec, to_yaml),
overrides (--set), checks (cross-section rules), expand (ablation and search).
"""

from effray.spec.checks import SAMPLERS, check_spec, file_problems
from effray.spec.expand import (
    expand,
    expand_one,
    planned_trials,
    point_trial,
    search_points,
    technique_sets,
)
from effray.spec.load import load_spec, spec_from_dict, to_yaml
from effray.spec.messages import problems_from, user_fields
from effray.spec.overrides import apply_override, parse_override
from effray.spec.schema import (
    DATASETS,
    SYNTHETIC_ONLY,
    AblationMode,
    DataSpec,
    ExperimentSpec,
    ModelSpec,
    ResourcesSpec,
    RunSpec,
    SearchSpec,
    Strict,
    TrainSpec,
    TrialMeta,
    WandbSpec,
    json_schema,
    new_trial_id,
)
from effray.spec.search import ALGORITHMS, SCHEDULERS, Alternative, AshaSpec, PbtSpec, Stage

__all__ = [
    "ALGORITHMS",
    "SCHEDULERS",
    "Alternative",
    "PbtSpec",
    "Stage",
    "DATASETS",
    "SAMPLERS",
    "SYNTHETIC_ONLY",
    "AblationMode",
    "AshaSpec",
    "DataSpec",
    "ExperimentSpec",
    "ModelSpec",
    "ResourcesSpec",
    "RunSpec",
    "SearchSpec",
    "Strict",
    "TrainSpec",
    "TrialMeta",
    "WandbSpec",
    "apply_override",
    "check_spec",
    "file_problems",
    "expand",
    "expand_one",
    "planned_trials",
    "point_trial",
    "json_schema",
    "load_spec",
    "new_trial_id",
    "parse_override",
    "problems_from",
    "search_points",
    "spec_from_dict",
    "technique_sets",
    "to_yaml",
    "user_fields",
]
