"""The managed (lifecycle) fusion node, as yolo_ros does it: the same work as :class:`FuseNode`, split over
the ROS 2 lifecycle transitions so a system manager decides when it costs memory and CPU.

- configure: read and check the parameters, load and warm up the model, create the outputs;
- activate: subscribe, start diagnostics and the worker (fused images flow);
- deactivate: unsubscribe and stop the worker (the model stays loaded, GPU memory is kept);
- cleanup: drop the outputs and the model, free the GPU memory; shutdown cleans up from any state.

A bad parameter fails ``configure`` (the node stays unconfigured, the error is logged) instead of ending the
process. Run it with ``fuse_node_lifecycle`` (``--autostart`` configures and activates at once) or the launch
file's ``managed:=true``; drive it with ``ros2 lifecycle set /fuse_node configure`` and so on.
"""

from __future__ import annotations

import sys
from typing import Any

from rclpy.lifecycle import Node as LifecycleNode
from rclpy.lifecycle import State, TransitionCallbackReturn

from ssvif_ros.node.fuse_node import NODE_NAME, FusionNodeCore, own_arguments, spin_node, usage
from ssvif_ros.node.params import ConfigError

__all__ = ["LifecycleFuseNode", "main"]


class LifecycleFuseNode(FusionNodeCore, LifecycleNode):
    """The fusion node as a managed node; ``kwargs`` go to :class:`rclpy.lifecycle.Node`."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._refuse_unknown_overrides()
        self.engine = None
        self._active = False

    def on_configure(self, state: State) -> TransitionCallbackReturn:
        try:
            self._configure()
        except ConfigError as err:
            self.get_logger().error(f"cannot configure: {err}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self._activate()
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._deactivate()
        self._active = False
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._cleanup()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        if self._active:
            self._deactivate()
            self._active = False
        if self.engine is not None:
            self._cleanup()
        return TransitionCallbackReturn.SUCCESS


def main(args: list[str] | None = None) -> int:
    """``fuse_node_lifecycle [--autostart] --ros-args ...``: 0 on a clean shutdown, 2 when ``--autostart``
    cannot configure."""
    own = own_arguments(args)
    if {"-h", "--help"} & set(own):
        print("managed (lifecycle) variant: [--autostart] configures and activates at once\n" + usage())
        return 0
    return spin_node(lambda: _started(LifecycleFuseNode(), "--autostart" in own), args)


def _started(node: LifecycleFuseNode, autostart: bool) -> LifecycleFuseNode:
    """``node``, configured and activated when ``autostart`` (a failed configure ends the program: exit 2)."""
    if autostart:
        if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.destroy_node()
            raise ConfigError("--autostart: configure failed (the reason is logged above)")
        node.trigger_activate()
    return node


if __name__ == "__main__":
    sys.exit(main())
