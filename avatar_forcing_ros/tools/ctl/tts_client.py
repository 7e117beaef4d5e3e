"""``avatar-forcing-ctl say`` through a running tts node: a goal of its ``Say`` action.

The node speaks with its own engine (Piper where installed) on its own timeline; the command
ends when the speech has been sent. Ctrl-C cancels the goal (the node stops the speech at once)
and ends the command with status 130.
"""
from __future__ import annotations

from rclpy.action import ActionClient
from rclpy.action.client import ClientGoalHandle

from avatar_forcing_ros.action import Say
from avatar_forcing_ros.tools.ctl.ros_session import CtlError, Interrupted, Session

ACTION = 'avatar/say'
DISCOVERY_S = 2.0          # how long `say` looks for a tts node before it speaks by itself
CANCEL_WAIT_S = 2.0        # after Ctrl-C: how long to wait for the node to accept the cancel


def find_server(session: Session, wait_s: float) -> ActionClient | None:
    """A client of the tts node's Say action when a server answers within ``wait_s``, else None."""
    client = ActionClient(session.node, Say, ACTION)
    if session.spin_until(client.server_is_ready, wait_s):
        return client
    client.destroy()
    return None


def say(session: Session, client: ActionClient, text: str, voice: str, timeout_s: float) -> int:
    """Send the goal and wait for the speech to end; 0 when all of it was said."""
    if not text.strip():
        raise CtlError('nothing to say: the text is empty')
    sent = client.send_goal_async(Say.Goal(text=text, voice=voice))
    goal: ClientGoalHandle = session.result(sent, timeout_s, f'{ACTION} goal')
    if not goal.accepted:
        raise CtlError('the tts node refused the text (empty, or its queue is full)')
    result_future = goal.get_result_async()
    try:
        session.spin_until(result_future.done, float('inf'))
    except Interrupted:   # Ctrl-C: the speech stops too, not only the command
        session.spin_until(goal.cancel_goal_async().done, CANCEL_WAIT_S, after_interrupt=True)
        raise
    result = result_future.result().result
    if not result.completed:
        raise CtlError(f'the tts node stopped the speech after {result.duration_s:.2f} s: '
                       f'{result.message}')
    print(f'said {text!r} through the tts node: {result.duration_s:.2f} s')
    return 0
