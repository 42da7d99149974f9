"""The perceptual study: 2AFC stimuli (`stimuli`), a static rating page (`page/`), analysis."""
