"""Measurements: phase clocks, memory, energy, statistics and cost arithmetic.

Every figure these modules return carries its unit in its name (``wall_s``,
``energy_kwh``, ``usd_per_hour``) and says what it covers.
"""
