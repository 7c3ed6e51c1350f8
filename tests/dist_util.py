"""What the data-parallel tests share: a free loopback port, and two ranks started the torchrun way
(one process each, from the environment) of which rank 1 is killed mid-run.

    alive, rc, err, took = kill_rank_1(duet, args, env, after=4)
"""
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_rank_1(duet, args, env, after):
    """Starts `duet args` as ranks 0 and 1, kills rank 1 after `after` seconds and waits for rank 0
    (60 s at most: then it is killed and its stderr starts with HUNG). Returns whether both were
    running at the kill, rank 0's exit status and stderr, and the seconds it took to exit."""
    port = free_port()
    envs = [{"RANK": str(r), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
             "DUET_DIST_TIMEOUT": "20"} for r in range(2)]
    procs = [subprocess.Popen([duet] + args, env={**env, **e}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for e in envs]
    time.sleep(after)
    alive = procs[0].poll() is None and procs[1].poll() is None
    procs[1].kill()
    t0 = time.time()
    try:
        _, err = procs[0].communicate(timeout=60)
    except subprocess.TimeoutExpired:
        procs[0].kill()
        _, err = procs[0].communicate()
        err = "HUNG " + err
    procs[1].communicate()
    return alive, procs[0].returncode, err, time.time() - t0
