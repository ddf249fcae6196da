"""Response: freeze, preserve, cut egress, kill, quarantine and revoke, opt-in and safe by default.

`policy` decides from a finding, `sequence` runs the steps in order in a worker thread;
`targets` holds what every step shares: process identity, the scope and what is protected.
"""
