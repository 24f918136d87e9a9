"""Face recognition: feature normalisation, margin heads and metric losses, backbones, verification."""
