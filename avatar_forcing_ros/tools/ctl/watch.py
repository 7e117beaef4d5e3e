"""``avatar-forcing-ctl status`` (the generator's GeneratorStatus, one summary line per message)
and ``topics`` (rate, count and age per topic, with the topic_monitor's counting)."""
from __future__ import annotations

from avatar_forcing_ros.msg import GeneratorStatus
from avatar_forcing_ros.nodes.topic_rates import TopicRates
from avatar_forcing_ros.tools.ctl.ros_session import CtlError, Session

_DISCOVERY_S = 2.0  # how long `topics` waits for the watched topics to appear in the graph
_MATCHING_S = 0.5   # then for its subscriptions to match the publishers, before counting


def _input_age(name: str, age_s: float, stale: bool) -> str:
    if age_s < 0:
        return f'{name} never'
    return f"{name} {age_s:.2f} s{' STALE' if stale else ''}"


def summarize_status(status: GeneratorStatus) -> str:
    """One line: backend, compute, queue, latency, quality, counters, input ages."""
    parts = [f'{status.backend} ({status.latent_space})',
             f'block {status.last_block_compute_s * 1e3:.0f} ms '
             f'(mean {status.mean_block_compute_s * 1e3:.0f} ms)',
             f'queue {status.queue_depth}',
             f'latency {status.last_latency_ms:.0f} ms (budget {status.latency_budget_ms:.0f})']
    if status.nfe > 0:  # a backend without denoising steps reports none
        parts.append(f'NFE {status.nfe}, {status.guidance_branches} branches')
    parts.append(f'frames {status.frames_published}, hold {status.hold_frames}, '
                 f'late blocks {status.late_blocks}, malformed {status.malformed_inputs}')
    parts.append('inputs: ' + ', '.join([
        _input_age('camera', status.camera_age_s, status.camera_stale),
        _input_age('user audio', status.user_audio_age_s, status.user_audio_stale),
        _input_age('avatar audio', status.avatar_audio_age_s, status.avatar_audio_stale)]))
    return ' | '.join(parts)


def status(session: Session, topic: str, once: bool, timeout: float) -> int:
    """Print a summary of every GeneratorStatus on ``topic`` (the first only with ``once``)."""
    received: list[GeneratorStatus] = []
    subscription = session.node.create_subscription(GeneratorStatus, topic, received.append, 10)
    if not session.spin_until(lambda: received, timeout):
        raise CtlError(f'no GeneratorStatus on {subscription.topic_name} within {timeout:g} s '
                       '(is the generator running, in this ROS_DOMAIN_ID and namespace?)')
    while True:
        for message in received:
            print(summarize_status(message), flush=True)
            if once:
                return 0
        received.clear()
        session.spin_until(lambda: received, 1.0)


def topics(session: Session, names: list[str], period: float, count: int,
           timeout: float = _DISCOVERY_S) -> int:
    """Print each watched topic's rate, count and age every ``period`` s (``count`` reports; 0 =
    until Ctrl-C). No names: every topic of the graph, waiting up to ``timeout`` s for the first."""
    if period <= 0:
        raise CtlError(f'--period must be > 0, got {period:g}')
    resolved = [session.node.resolve_topic_name(n) for n in names] if names else None
    rates = TopicRates(session.node, resolved)

    def discovered() -> bool:  # every named topic subscribed; all topics: the whole discovery time
        rates.subscribe_new_topics()
        return resolved is not None and all(s.type_name for s in rates.stats.values())

    session.spin_until(discovered, _DISCOVERY_S)
    def first_topic() -> bool:
        rates.subscribe_new_topics()
        return bool(rates.stats)

    if not rates.stats:   # a slow graph (a loaded machine, nodes still starting): wait for one
        session.spin_until(first_topic, max(0.0, timeout - _DISCOVERY_S))
    if not rates.stats:
        raise CtlError(f'no topics in the graph within {max(timeout, _DISCOVERY_S):g} s '
                       '(are nodes running, in this ROS_DOMAIN_ID?)')
    session.spin_for(_MATCHING_S)
    rates.report()  # counting starts now
    reports = 0
    while count == 0 or reports < count:
        session.spin_for(period)
        rates.subscribe_new_topics()
        print('\n'.join(rates.report()) + '\n', flush=True)
        reports += 1
    return 0
