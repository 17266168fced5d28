"""Edge deployment: bundles for devices (bundle) and the device-side runner (runner)."""
