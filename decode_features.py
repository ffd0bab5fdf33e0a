"""Decode VGG19 features from the fMRI, into the decoded-feature tree the scripts read.

Trains the lab's feature decoders (FastL2LiR: alpha 100, the 500 voxels most correlated
with each unit, voxels and features normalised with the training mean and SD) on the
training fMRI of Shen, Horikawa, Majima & Kamitani (2019), PLOS Comput Biol 15(1):
e1006633, predicts the features of the test images from the test fMRI (trials averaged
per image), and writes them as the original's decoded features:

    <decoded_features_dir>/natural/VGG19/<layer>/<subject>/<roi>/natural-VGG19-<layer>-<subject>-<roi>-<label>.mat

Scripts 1-7 reconstruct from that tree when their ``decoded_features_dir`` constant points
at it. The fMRI files (bdpy BData, figshare) are downloaded when missing; the stimulus
images are available from the authors on request (https://forms.gle/ujvA34948Xg49jdn9):
put them in the image folders below, named by stimulus (``n01518878_10042.JPEG``).
Edit the constants to decode another ROI, layer set or network (a misspelled constant
stops the script and names the closest one; a helper value of your own starts with ``_``);
run ``python decode_features.py --help`` for the command-line overrides.

Needs the ``decoding`` extra (bdpy and fastl2lir): ``pip install -e '.[decoding]'``.

Also written: the image features (``features_dir``), one file per unit chunk of decoding
results (``decoders_dir``), and the decoding accuracy per layer
(``<decoded_features_dir>/natural/VGG19/decoding_accuracy.csv``).
"""

from icnn_torch.decoding.run import main

# fMRI (bdpy BData files of the original, one training and one test file per subject).
subjects_list = ['S1', 'S2', 'S3']
rois_list = ['VC']            # V1 V2 V3 V4 LOC FFA PPA LVC HVC VC
fmri_dir = './data/fmri'
label_key = 'stimulus_name'   # the BData label column of the stimulus images

# Stimulus images (from the authors on request), named <stimulus name>.<ext>.
training_images_dir = './data/images/training'
test_images_dir = './data/images/test'   # for the decoding accuracy only

# Encoder: the network whose features are decoded, and its layers.
image_type = 'natural'
network = 'VGG19'
layers = ['conv1_1', 'conv1_2', 'conv2_1', 'conv2_2', 'conv3_1', 'conv3_2', 'conv3_3',
          'conv3_4', 'conv4_1', 'conv4_2', 'conv4_3', 'conv4_4', 'conv5_1', 'conv5_2',
          'conv5_3', 'conv5_4', 'fc6', 'fc7', 'fc8']  # all conv and fc layers

# Decoders.
decoder = 'fastl2lir'   # the lab's FastL2LiR, or 'torch' (ours, batched; CPU or GPU)
alpha = 100             # L2 regularisation
num_voxel = 500         # voxels selected per unit (by correlation on the training data)
dtype = 'float32'       # decoder arithmetic, as the lab
average_trials = True   # average the test trials of each image (False: one file per trial)
test_labels = 'Img'     # 'Img': Img0001... in stimulus-id order; 'stimulus_name'; or a CSV

# Outputs, and how the script behaves.
features_dir = './data/features'
decoders_dir = './data/feature_decoders'
decoded_features_dir = './data/decodedfeatures_from_fmri'
units_per_chunk = 8192  # units per job (jobs split over torchrun ranks / SLURM array tasks)
save_decoders = False   # True: keep the decoders' voxels and weights (about 4 kB per unit)
batch_size = 8          # images per forward pass
download = 'ask'        # missing fMRI/weights: 'ask' (on a terminal), 'yes', or 'no' (stop)
overwrite = False       # True: redo what exists
device = None           # None: CUDA when present, else CPU; or 'cpu', 'cuda:1', ...


if __name__ == '__main__':
    raise SystemExit(main(globals()))
