"""moto's services as the adapter changes them, one module per service, and what the
rows of its table are made of (``base``). The table itself, one readable list, is
``devstack.emulation.moto_adapter``; only it applies the rows."""
