"""Regulatory files of domain.md section 5: MiFIR RTS 22 transaction reports and CFTC Part 17 position
records, with manifests, deterministic names and corrections as cancellations plus new records."""
