/** Imports every built-in component so that its registration runs. */
import './datasets/index.ts';
import './models/backbones/resnet.ts';
import './models/backbones/rla_resnet.ts';
import './models/classifiers/image_classifier.ts';
import './models/necks/fpn.ts';
import './models/dense_heads/retina_head.ts';
import './models/detectors/single_stage.ts';
