"""The sandbox: simulator, demo, benchmark, soak, embedded services and the stand-in receiver (top floor)."""
