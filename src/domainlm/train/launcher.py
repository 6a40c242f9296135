"""Multi-process and multi-node runs: re-execute the same ``domainlm train`` under a launcher.

``--launcher torchrun`` uses ``torch.distributed.run``; ``--launcher accelerate`` uses ``accelerate launch``
(which also reads ``accelerate config`` files). The strategy (ddp, fsdp, deepspeed) reaches accelerate's
``Accelerator`` through its documented environment variables, so the training code is the same for all.
On a machine without CUDA, processes talk over gloo.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from domainlm.errors import DomainlmError

STRATEGY_ENV = {
    "ddp": {},
    "fsdp": {"ACCELERATE_USE_FSDP": "true", "FSDP_SHARDING_STRATEGY": "FULL_SHARD",
             "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP", "FSDP_USE_ORIG_PARAMS": "true"},
    "deepspeed": {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"},
}


def inside_launcher() -> bool:
    return "LOCAL_RANK" in os.environ or "RANK" in os.environ


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_command(launcher: str, nproc: int, argv: list[str], *, nnodes: int = 1, node_rank: int = 0,
                   master_addr: str = "127.0.0.1", master_port: int | None = None, cuda: bool | None = None) -> list[str]:
    """The command line that runs ``domainlm <argv>`` in ``nproc`` processes per node."""
    port = str(master_port or free_port())
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--nnodes={nnodes}",
                f"--node_rank={node_rank}", f"--master_addr={master_addr}", f"--master_port={port}",
                "-m", "domainlm", *argv]
    if launcher == "accelerate":
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(nproc * nnodes),
               "--num_machines", str(nnodes), "--machine_rank", str(node_rank), "--main_process_ip", master_addr,
               "--main_process_port", port]
        # several processes go through torch.distributed.run (accelerate's --multi_gpu path), on CPU too (gloo)
        cmd += ["--multi_gpu"] if nproc * nnodes > 1 else ([] if cuda else ["--cpu"])
        return cmd + ["-m", "domainlm", *argv]
    raise DomainlmError(f"--launcher {launcher}: expected torchrun or accelerate")


def relaunch(launcher: str, nproc: int, strategy: str, argv: list[str], **node) -> int:
    """Run the command under the launcher and wait; returns its exit code."""
    if strategy not in STRATEGY_ENV:
        raise DomainlmError(f"--strategy {strategy}: expected one of {', '.join(STRATEGY_ENV)}")
    env = dict(os.environ, **STRATEGY_ENV[strategy])
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) // max(nproc, 1))))
    return subprocess.run(launch_command(launcher, nproc, argv, **node), env=env).returncode


def strip_launcher_args(argv: list[str]) -> list[str]:
    """The same command without the launcher options (so the launched copies train instead of launching)."""
    takes_value = {"--launcher", "--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port", "--strategy"}
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in takes_value:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out
