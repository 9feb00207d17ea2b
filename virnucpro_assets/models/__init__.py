"""Model inference: DNABERT-S (DNABERT-2 architecture), ESM-2 and the VirNucPro classifier."""
