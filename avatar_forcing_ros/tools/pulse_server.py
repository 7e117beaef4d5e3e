"""A private PulseAudio server with null sinks: a real audio path on machines without sound hardware.

Used by the demo (a synthetic user speaks into a null sink whose monitor is the "microphone";
the avatar's speech plays into another null sink) and by the tests. The server has its own
socket and runtime directory, so it neither needs nor disturbs a user's own server; processes
started with :attr:`PrivatePulseServer.env` use it (PortAudio reaches it through ALSA's pulse
plugin).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


class PulseAudioError(RuntimeError):
    """The PulseAudio server could not be started or controlled."""


class PrivatePulseServer:
    """Context manager: start ``pulseaudio`` with the given null sinks, stop it on exit.

    ``env`` is os.environ plus PULSE_SERVER / PULSE_RUNTIME_PATH and, for the first sink,
    PULSE_SINK=sink and PULSE_SOURCE=sink.monitor (the default output plays into it and the
    default input records it).
    """

    def __init__(self, sinks: list[str], rate: int = 48000, start_timeout_s: float = 15.0) -> None:
        if not sinks:
            raise ValueError("at least one null sink name is needed")
        self.sinks = list(sinks)
        self.rate = rate
        self.start_timeout_s = start_timeout_s
        self.env: dict[str, str] = {}
        self._runtime: Path | None = None
        self._server: subprocess.Popen | None = None

    def pactl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10)

    def __enter__(self) -> "PrivatePulseServer":
        if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
            raise PulseAudioError("PulseAudio is not installed (Debian packages pulseaudio, "
                                  "pulseaudio-utils; scripts/setup.sh installs them)")
        self._runtime = Path(tempfile.mkdtemp(prefix="af_pulse_"))
        socket = self._runtime / "native"
        first = self.sinks[0]
        self.env = dict(os.environ, PULSE_RUNTIME_PATH=str(self._runtime),
                        PULSE_STATE_PATH=str(self._runtime), PULSE_SERVER=f"unix:{socket}",
                        PULSE_SINK=first, PULSE_SOURCE=f"{first}.monitor")
        cmd = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--use-pid-file=no",
               "-L", f"module-native-protocol-unix socket={socket} auth-anonymous=1"]
        for sink in self.sinks:
            cmd += ["-L", f"module-null-sink sink_name={sink} rate={self.rate}"]
        log = open(self._runtime / "pulseaudio.log", "w")
        self._server = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            self._wait_for_sinks()
            self.pactl("set-default-sink", first)
            self.pactl("set-default-source", f"{first}.monitor")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_sinks(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            listed = self.pactl("list", "short", "sinks").stdout
            if all(sink in listed for sink in self.sinks):
                return
            if self._server.poll() is not None or time.monotonic() > deadline:
                tail = (self._runtime / "pulseaudio.log").read_text()[-2000:]
                raise PulseAudioError(f"PulseAudio did not start: {tail}")
            time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.terminate()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._runtime is not None:
            shutil.rmtree(self._runtime, ignore_errors=True)
            self._runtime = None
