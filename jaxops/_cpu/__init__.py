"""Formulations tuned by measurement for XLA:CPU: the ``cpu`` branches of
:func:`jaxops._platform.choose`."""
