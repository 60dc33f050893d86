"""The training doctor (seed §7): reads a run directory, says what is wrong, with the evidence,
the seed's explanation, the advice and the config change that applies it."""
from cnntricks.doctor.checks import CHECKS
from cnntricks.doctor.diagnose import diagnose, diagnose_evidence
from cnntricks.doctor.evidence import Evidence, load_evidence
from cnntricks.doctor.findings import IDS, SEVERITIES, Finding, format_findings, worst

__all__ = ["CHECKS", "diagnose", "diagnose_evidence", "Evidence", "load_evidence", "IDS", "SEVERITIES",
           "Finding", "format_findings", "worst"]
