"""ROS 2 glue: message conversion, the segmentation node, launch-time helpers.

Only this subpackage imports rclpy and ROS message types; the rest of ``instrument_seg`` runs
without ROS. It holds no algorithm: inference goes through :class:`instrument_seg.inference.
Segmenter`, colour handling through :mod:`instrument_seg.ros.conversions`.
"""
