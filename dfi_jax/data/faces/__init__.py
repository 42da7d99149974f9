"""Procedural aligned frontal faces with binary attributes and counterfactual ground truth.

This is the embedded default dataset. DFI needs a bank of faces labelled with binary
attributes, and evaluating an edit needs, for a test face, the *same identity* rendered
again with one attribute toggled. Everything here is deterministic: `sample_face(seed)`
draws an identity (`FaceParams`) from `np.random.default_rng(seed)`, and `render` draws it
at any square size from 32 to 1024 px.

Attributes (`ATTRIBUTES`), each a change of *shape*, not just of colour:
  older       grey hair, brows and moustache; forehead lines, crow's feet, under-eye bags,
              nasolabial folds and marionette lines.
  mouth_open  dark mouth interior with upper teeth and tongue vs a closed line between lips.
  eyes_open   sclera, iris, pupil and catchlight vs a closed lid with a lash line.
  smiling     mouth wider with corners up, lips parted over the upper teeth (a D-shaped
              open mouth with mouth_open), smile creases, cheeks raised and flushed.
  moustache   a hair-coloured moustache (3 styles) between nose and upper lip.
  eyeglasses  round, rectangular or oval frames, bridge and temples, faint lens tint.

Joint distribution: the six attributes are independent Bernoulli variables with the
marginals in `ATTRIBUTE_PROBS` (older .30, mouth_open .35, eyes_open .80, smiling .45,
moustache .25, eyeglasses .30), drawn first from the seed's generator; identity parameters
(face shape, placement jitter, skin, hair colour and style, brows, eyes, iris, nose, mouth,
lips, ears, clothing, background, lighting, glasses and moustache style) are drawn after
them, also independently of the attributes.

How a face is drawn: every feature is a small display list of PIL drawing operations in
unit image coordinates (0..1 across the image), built by a function that sees only the
attributes it declares. The lists are drawn back to front at 4x supersampling (2x above
256 px) and box-reduced. The result is multiplied by a smooth lighting gradient with a
vignette and, over the face silhouette (less opaque front hair), by a radial shading that
darkens towards the rim with its peak leaning to the light and by a low-frequency skin
texture (upsampled 7x7 and 23x23 random fields). Then a slight blur (half identity, half a
binomial kernel of radius `r = max(1, round(size / 256))` px) and Gaussian pixel noise
(sigma `NOISE_SIGMA` = 0.01). Texture, lighting, shading and noise depend on the identity and
seed alone, so a counterfactual has exactly the same ones.

Masks are geometric, not diffs: `masks[a]` is the footprint of every drawing operation of
every feature that depends on `a`, taken over *all* values of that feature's attributes,
box-reduced to output pixels (any covered sub-pixel counts) and dilated by the blur radius
`r`. A pixel can only change where an `a`-dependent op lands in either render, and every
later step is pixelwise except the blur, so toggling `a` leaves every pixel outside
`masks[a]` bit-for-bit unchanged (the tests check this). Masks depend on the identity only,
never on any attribute value. They are somewhat generous: `older` covers all hair, the
brows, the wrinkle lines and the would-be moustache; `smiling` and `mouth_open` both cover
the union of the four mouth shapes; `smiling` also covers the cheeks and lower lids.

Conventions: images are `[S, S, 3]` float32 RGB in [0, 1]. Landmarks are `(x, y)` in output
pixel coordinates with pixel `(row i, column j)` centred at `(x, y) = (j, i)`. "left" and
"right" are *image* sides: `left_eye` is the eye nearer x = 0 (the subject's right eye).

Speed (CPU time per `render`, masks included, one core of a busy 2-core machine): 32 px
~8 ms, 64 px ~9 ms, 128 px ~18 ms, 256 px ~43 ms, 512 px ~85 ms, 1024 px ~0.46 s.
`generate` skips the masks: ~7 ms per 64 px face, ~11 ms per 128 px face.

The package: `params` (identities, sampling), `geometry` (layout, landmarks, drawing ops),
`head` and `parts` (each feature's display list), `render` (drawing, masks).
"""

from dfi_jax.data.faces.params import (
    ATTRIBUTES, ATTRIBUTE_PROBS, GLASSES_STYLES, HAIR_STYLES, LANDMARKS, MAX_SIZE, MIN_SIZE,
    MOUSTACHE_STYLES, NECKLINES, NOISE_SIGMA, RGB, Face, FaceParams, sample_face,
    with_attributes)
from dfi_jax.data.faces.render import (
    counterfactual, generate, layout_landmarks, render)

__all__ = ["ATTRIBUTES", "ATTRIBUTE_PROBS", "Face", "FaceParams", "GLASSES_STYLES", "HAIR_STYLES",
           "LANDMARKS", "MAX_SIZE", "MIN_SIZE", "MOUSTACHE_STYLES", "NECKLINES", "NOISE_SIGMA",
           "RGB", "counterfactual", "generate", "layout_landmarks", "render", "sample_face",
           "with_attributes"]
