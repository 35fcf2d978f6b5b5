"""Offline training: frozen features, losses, the training set, the loop, DDP and ablations.

See docs/method.md section 3. The deployment path (inference/, ros/) never imports this package.
"""
