"""ROS 2 glue: parameters, QoS, message conversion, the two nodes, launch-time helpers.

Only this subpackage imports rclpy and ROS message types; the rest of ``instrument_seg`` runs
without ROS. It holds no algorithm: inference goes through :class:`instrument_seg.inference.
Segmenter`, colour handling through :mod:`instrument_seg.ros.conversions`. :mod:`.params`
(both nodes' parameters), :mod:`.param_table` (a parameter table's checks and declaration) and
:mod:`.launch_plan` (what the launch files share) import without rclpy; this file imports
nothing, so launch files can use them.
"""
