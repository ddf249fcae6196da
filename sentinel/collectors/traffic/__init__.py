"""Traffic: DNS answers and the first bytes of each new flow, in every watched namespace."""
