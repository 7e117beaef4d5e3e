"""Shared pytest fixtures.

``pulseaudio_null_sink`` (session scope): a private PulseAudio server (its own socket and runtime
directory under a temporary folder, so it neither needs nor disturbs a user's server) with a
null sink. Play into the sink (``paplay --device=NAME``) and record its monitor through
PortAudio/ALSA's pulse plugin from any process started with the yielded environment.
"""
from __future__ import annotations

import os

import pytest
from safetensors.torch import load_file

from avatar_forcing_ros.tools.pulse_server import PrivatePulseServer
from fixture_paths import PARITY_TINY


@pytest.fixture(scope='session')
def pulseaudio_null_sink():
    """Yield ``(sink_name, env)``: ``env`` is os.environ plus PULSE_SERVER, PULSE_RUNTIME_PATH,
    PULSE_SINK=sink_name and PULSE_SOURCE=sink_name.monitor; give it to child processes (or
    ``os.environ.update`` it) so their default output plays into the sink and their default
    input records the sink's monitor. The server is stopped at the end."""
    sink = f'af_test_sink_{os.getpid()}'
    # A missing PulseAudio raises PulseAudioError here: scripts/setup.sh installs it, so its
    # absence is a failure of the set-up, not a reason to skip.
    with PrivatePulseServer([sink]) as server:
        yield sink, server.env




@pytest.fixture(scope='session')
def gold():
    """The parity-tiny goldens (test/fixtures/parity/tiny/goldens.safetensors), read once per run."""
    return load_file(str(PARITY_TINY / 'goldens.safetensors'))


@pytest.fixture(scope='session')
def inputs():
    """The parity-tiny inputs (test/fixtures/parity/tiny/inputs.safetensors), read once per run."""
    return load_file(str(PARITY_TINY / 'inputs.safetensors'))
