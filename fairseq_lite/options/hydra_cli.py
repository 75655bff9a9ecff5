"""fairseq-hydra-train's command line: Hydra's flags apart from the overrides, the run composed once
before Hydra starts, and each job's config finished inside Hydra's run directory."""

import os

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.options.compose import compose_config, finalize_config, strip_yaml_suffix
from fairseq_lite.options.initialize import CONFIG_NAME, bundled_config_dir, import_components
from fairseq_lite.options.overrides import first_sweep_values, normalize_overrides
from fairseq_lite.options.yaml_source import as_source_path

# Hydra's own flags: (names, takes a value).
_HYDRA_FLAGS = {
    "--config-path": True,
    "-cp": True,
    "--config-name": True,
    "-cn": True,
    "--config-dir": True,
    "-cd": True,
    "--cfg": True,
    "-c": True,
    "--package": True,
    "-p": True,
    "--info": False,
    "-i": False,
    "--experimental-rerun": True,
    "--shell-completion": False,
    "-sc": False,
}
# Flags after which Hydra prints something instead of running a job.
_NO_RUN_FLAGS = {
    "--cfg",
    "-c",
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--version",
    "--shell-completion",
    "-sc",
}


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Hydra flags (kept as given) and overrides (to normalize)."""
    flags, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg.startswith("-") and not arg.startswith(("+", "~")):
            flags.append(arg)
            if _HYDRA_FLAGS.get(name) and "=" not in arg and i + 1 < len(argv):
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def flag_value(flags: list[str], *names: str) -> str | None:
    for i, flag in enumerate(flags):
        name, sep, value = flag.partition("=")
        if name in names:
            return value if sep else (flags[i + 1] if i + 1 < len(flags) else None)
    return None


def config_path_of(flags: list[str], app_dir: str) -> str | None:
    """`--config-path` as Hydra defines it: absolute, or relative to the command's own file."""
    path = flag_value(flags, "--config-path", "-cp")
    if path is None or path.startswith("pkg://"):
        return path
    return path if os.path.isabs(path) else os.path.join(app_dir, path)


def compose_first_job(flags: list[str], overrides: list[str], app_dir: str) -> tuple[DictConfig, bool] | None:
    """The config of the run (the first job of a sweep) these arguments ask for, composed once before
    Hydra starts, so that a mistake is one line before Hydra makes a run directory or logs anything;
    None when nothing will run (--cfg, --help, ...) or the sweep cannot be read here. `app_dir` is the
    directory of the command's file (what a relative --config-path is relative to).

    With it comes whether its checkpoint.save_dir is the one the job will use: by default the job's
    checkpoints go into its run directory, which is known here only when `hydra.run.dir=` is given
    (else it is a new, timestamped directory: nothing to resume)."""
    if any(f.split("=", 1)[0] in _NO_RUN_FLAGS for f in flags):
        return None
    multirun = "-m" in flags or "--multirun" in flags
    if multirun:
        first = first_sweep_values(overrides)
        if first is None:
            return None
        overrides = first
    task_overrides = [
        o for o in overrides if not o.lstrip("+~").startswith("hydra.") and not o.lstrip("+~").startswith("hydra/")
    ]
    cfg = compose_config(
        task_overrides,
        config_dir=flag_value(flags, "--config-dir", "-cd"),
        config_name=flag_value(flags, "--config-name", "-cn") or CONFIG_NAME,
        config_path=config_path_of(flags, app_dir),
    )
    given = {o.lstrip("+~").split("=", 1)[0]: o.split("=", 1)[-1] for o in overrides}
    save_dir_known = True
    if "checkpoint.save_dir" not in given and cfg.checkpoint.save_dir == "checkpoints":
        run_dir = given.get("hydra.run.dir") if not multirun else None
        if run_dir:
            cfg.checkpoint.save_dir = os.path.join(run_dir.strip("'\""), "checkpoints")
        else:
            save_dir_known = False
    return cfg, save_dir_known


def place_outputs_in_run_dir(cfg: DictConfig) -> None:
    """Checkpoints and tensorboard logs default to the run's own directory, so runs (and the jobs of
    a sweep) never overwrite each other."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    given = {o.lstrip("+~").split("=", 1)[0] for o in hydra_cfg.overrides.task}
    run_dir = hydra_cfg.runtime.output_dir
    if "checkpoint.save_dir" not in given and cfg.checkpoint.save_dir == "checkpoints":
        cfg.checkpoint.save_dir = os.path.join(run_dir, "checkpoints")
    if "common.tensorboard_logdir" not in given and cfg.common.tensorboard_logdir is None:
        cfg.common.tensorboard_logdir = os.path.join(run_dir, "tensorboard")


def hydra_argv(flags: list[str], overrides: list[str]) -> list[str]:
    """The arguments to give Hydra: its flags, our run defaults (fairseq's log format in train.log, the
    job name, the help's name) unless the user set them, and the overrides made to fit any primary config.

    `--config-name NAME.yaml` loses its suffix. `--config-dir DIR` is read as fairseq's YAML: when DIR
    holds the primary config it becomes the primary directory (`--config-path`) with the bundled tree
    behind it, else a `hydra.searchpath` entry behind the bundled tree, as compose_config does."""
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    run_defaults = [
        o
        for o in ("hydra/job_logging=fairseq_lite", "hydra.job.name=train", "hydra.help.app_name=fairseq-hydra-train")
        if o.split("=", 1)[0] not in given
    ]
    config_name = strip_yaml_suffix(flag_value(flags, "--config-name", "-cn") or CONFIG_NAME)
    kept, extra_dirs = [], []
    i = 0
    while i < len(flags):
        name, sep, value = flags[i].partition("=")
        takes_value = _HYDRA_FLAGS.get(name) and not sep and i + 1 < len(flags)
        value = flags[i + 1] if takes_value else value
        if name in ("--config-dir", "-cd"):
            user_dir = os.path.abspath(os.path.expanduser(value))
            if os.path.isfile(os.path.join(user_dir, f"{config_name}.yaml")):
                kept += ["--config-path", user_dir]
                extra_dirs.append(as_source_path(bundled_config_dir()))
            else:
                extra_dirs.append(as_source_path(user_dir))
        elif name in ("--config-name", "-cn"):
            kept += [name, config_name]
        else:
            kept += flags[i : i + (2 if takes_value else 1)]
        i += 2 if takes_value else 1
    overrides = [_with_search_path(o, extra_dirs) if _is_searchpath(o) else o for o in overrides]
    if extra_dirs and not any(_is_searchpath(o) for o in overrides):
        overrides.append(f"hydra.searchpath=[{','.join(extra_dirs)}]")
    return [*kept, *run_defaults, *normalize_overrides(overrides)]


def _is_searchpath(override: str) -> bool:
    return override.lstrip("+~").split("=", 1)[0] == "hydra.searchpath"


def _with_search_path(override: str, extra_dirs: list[str]) -> str:
    """A user's `hydra.searchpath=[...]` after the --config-dir entries, its directories read as ours."""
    key, _, value = override.partition("=")
    entries = [e.strip().strip("'\"") for e in value.strip().strip("[]").split(",") if e.strip()]
    return f"{key}=[{','.join(extra_dirs + [as_source_path(e) for e in entries])}]"


def finish_job_config(cfg: DictConfig) -> DictConfig:
    """Inside a Hydra job: the plugins imported (a sweep job may run in a fresh process, e.g. on SLURM),
    the config checked against the schema, and outputs placed in the job's run directory."""
    import_components(
        OmegaConf.select(cfg, "common.user_dir", default=None)
        or OmegaConf.select(cfg, "_group_.common.user_dir", default=None)
    )
    from hydra.core.hydra_config import HydraConfig

    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    cfg = finalize_config(cfg, choices)
    place_outputs_in_run_dir(cfg)
    return cfg
