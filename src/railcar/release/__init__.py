"""Release engineering: signing keys now; versions, channels, artifacts, SBOM, promotion later."""
