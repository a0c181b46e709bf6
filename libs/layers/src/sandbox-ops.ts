/**
 * A step's sandbox network helpers (@stratum/runtime's SandboxNetwork), started by the worker's
 * long-lived exec helper (exec-helper.ts) as its own children instead of by forks of the worker:
 * two forks of a large Node process per RUN step, each blocking its event loop and leaving every
 * page it touches next to fault once more, cost more than the helpers themselves here.
 *
 * `{"op":"open", key, unshare, iptablesRestore, slirp4netns, rules, timeoutMs}`:
 * 1. the holder: `unshare --net` runs `sh`, which loads `rules` with iptables-restore, opens ICMP
 *    datagram sockets to every group (ping), prints `ready` and execs `cat`, which holds the
 *    namespace until its stdin (a pipe the helper keeps) closes;
 * 2. slirp4netns `--configure` on the holder's namespace (tap0), its ready and exit fds pipes of
 *    the helper; the helper keeps the exit fd's write end: slirp4netns ends when it closes.
 * Replies `{"pids": [holder, slirp4netns]}` once both are ready, or raises SandboxError saying
 * which one failed and what it wrote on stderr (both are then killed and reaped).
 * `{"op":"close", key}`: kills both (SIGKILL), reaps them (bounded) and closes their pipes. A
 * thread per helper reaps it whenever it ends (a start-up sweep kills them by pid).
 * When the helper ends (the worker died), its pipes close and both helpers end with it.
 */
export const SANDBOX_OPS_PY = String.raw`
import os, select, subprocess, threading, time
SANDBOXES = {}
SANDBOX_LOCK = threading.Lock()
HOLDER_SCRIPT = ('"$0" -w 5 "$1" && echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range'
                 ' && echo ready && exec cat')

class SandboxError(Exception):
    pass

def sandbox_wait(fd, proc, what, deadline, timeout_ms):
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SandboxError("%s was not ready after %d ms" % (what, timeout_ms))
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            data = os.read(fd, 64)
            if data:
                return
            proc.wait(timeout=2)
            raise SandboxError("%s exited (%s) before it was ready" % (what, proc.returncode))
        if proc.poll() is not None:
            raise SandboxError("%s exited (%s) before it was ready" % (what, proc.returncode))

def sandbox_stderr(proc):
    try:
        os.set_blocking(proc.stderr.fileno(), False)
        return (proc.stderr.read(4096) or b"").decode("utf-8", "replace").strip()
    except Exception:
        return ""

def sandbox_end(entry):
    for p in entry["procs"]:
        try:
            p.kill()
        except Exception:
            pass
    for p in entry["procs"]:
        try:
            p.wait(timeout=2)
        except Exception:
            pass
    for f in entry["fds"]:
        try:
            os.close(f)
        except Exception:
            pass
    for p in entry["procs"]:
        for s in (p.stdin, p.stdout, p.stderr):
            try:
                if s is not None:
                    s.close()
            except Exception:
                pass

def sandbox(req):
    if req["op"] == "close":
        with SANDBOX_LOCK:
            entry = SANDBOXES.pop(req["key"], None)
        if entry is not None:
            sandbox_end(entry)
        return {}
    timeout_ms = int(req.get("timeoutMs", 15000))
    deadline = time.monotonic() + timeout_ms / 1000.0
    entry = {"procs": [], "fds": []}
    what = "the sandbox network namespace"
    current = None
    try:
        try:
            holder = subprocess.Popen(
                [req["unshare"], "--net", "--", "/bin/sh", "-c", HOLDER_SCRIPT,
                 req["iptablesRestore"], req["rules"]],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise SandboxError("%s could not be run (%s: %s; infra/up.sh installs it)"
                               % (what, req["unshare"], e.strerror))
        entry["procs"].append(holder)
        current = holder
        sandbox_wait(holder.stdout.fileno(), holder, what, deadline, timeout_ms)
        what = "slirp4netns"
        ready_r, ready_w = os.pipe()
        exit_r, exit_w = os.pipe()
        entry["fds"] += [ready_r, exit_w]
        try:
            slirp = subprocess.Popen(
                [req["slirp4netns"], "--configure", "--mtu=65520", "--disable-host-loopback",
                 "--enable-sandbox", "--enable-seccomp", "--ready-fd=%d" % ready_w,
                 "--exit-fd=%d" % exit_r, str(holder.pid), "tap0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(ready_w, exit_r))
        except OSError as e:
            os.close(ready_w)
            os.close(exit_r)
            raise SandboxError("%s could not be run (%s: %s; infra/up.sh installs it)"
                               % (what, req["slirp4netns"], e.strerror))
        os.close(ready_w)
        os.close(exit_r)
        entry["procs"].append(slirp)
        current = slirp
        sandbox_wait(ready_r, slirp, what, deadline, timeout_ms)
    except Exception as e:
        said = sandbox_stderr(current) if current is not None else ""
        sandbox_end(entry)
        text = str(e) if isinstance(e, SandboxError) else "%s: %s" % (type(e).__name__, e)
        raise SandboxError(text + (": " + said if said else ""))
    with SANDBOX_LOCK:
        SANDBOXES[req["key"]] = entry
    # reaped as soon as they end, however they end (a sweep's SIGKILL too): no zombies kept
    for p in entry["procs"]:
        threading.Thread(target=p.wait, daemon=True).start()
    return {"pids": [p.pid for p in entry["procs"]]}
`;
