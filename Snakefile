# lingua-franca: language regions and semantic alignment in multilingual LLM neurons.
#
#   snakemake --profile profiles/default            # the demo config (workflow_config.yaml)
#   snakemake --profile profiles/default --configfile resources/experiments/X.yaml
#   snakemake --configfile resources/experiments/X.yaml fetch   # downloads, login node
#
# The Snakefile only validates the config and includes the rule files; each rule
# file holds one topic, rules/common.smk the config and the input functions.

from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


report: "resources/report/workflow.rst"


# The demo config, unless the command line gives a whole config file of its own (a
# --configfile is then not merged into the demo's models and languages). --config
# KEY=VALUE overrides whichever config is used: Snakemake merges it into the demo
# config when the directive below loads it, and into a --configfile's.
if not workflow.overwrite_configfiles:
    root = Path(workflow.basedir).resolve()
    if Path.cwd() != root and not Path("workflow_config.yaml").exists():
        raise WorkflowError(
            f"no workflow_config.yaml in the working directory, {Path.cwd()}: run snakemake"
            f" from the repository root, {root} (results/ and the config's relative paths"
            " are read from the working directory)"
        )

    configfile: "workflow_config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/toy_models.smk"
include: "rules/activations.smk"
include: "rules/evaluation.smk"
include: "rules/metrics.smk"
include: "rules/methods.smk"
include: "rules/ablation.smk"
include: "rules/aggregate.smk"
include: "rules/fetch.smk"


rule all:
    default_target: True
    input:
        all_targets(),
