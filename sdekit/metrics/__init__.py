"""Sample-quality metrics.

With the FID Inception network (weights read from the standard pytorch-fid file, see
`load_inception`): FID, Inception Score, KID and precision/recall, following the protocol of the
VDPM evaluation (pool3 2048-d features, inputs in [-1, 1], unbiased covariance, eps 1e-6).
Without any pretrained network: MMD, sliced Wasserstein, energy distance and a Fréchet distance on
any feature function. Command line: ``python -m sdekit.metrics --help``.

scipy is imported only when a Fréchet distance is computed, so importing this is cheap.
"""

from ._features import extract_features as extract_features
from ._features import read_images as read_images
from ._features import to_unit_range as to_unit_range
from ._inception import FID_WEIGHTS_NAME as FID_WEIGHTS_NAME
from ._inception import FID_WEIGHTS_URL as FID_WEIGHTS_URL
from ._inception import InceptionV3 as InceptionV3
from ._inception import default_weights_path as default_weights_path
from ._inception import inception_from_state_dict as inception_from_state_dict
from ._inception import inception_state_dict as inception_state_dict
from ._inception import load_inception as load_inception
from ._stats import StreamingStats as StreamingStats
from ._stats import feature_statistics as feature_statistics
from ._stats import fid_from_features as fid_from_features
from ._stats import frechet_distance as frechet_distance
from ._stats import inception_score as inception_score
from ._stats import kernel_inception_distance as kernel_inception_distance
from ._stats import knn_radii as knn_radii
from ._stats import load_stats as load_stats
from ._stats import polynomial_mmd2 as polynomial_mmd2
from ._stats import precision_recall as precision_recall
from ._stats import save_stats as save_stats
from ._weightless import energy_distance as energy_distance
from ._weightless import frechet_feature_distance as frechet_feature_distance
from ._weightless import median_bandwidth as median_bandwidth
from ._weightless import mmd as mmd
from ._weightless import sliced_wasserstein as sliced_wasserstein
