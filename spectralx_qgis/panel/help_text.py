"""The panel's help page, bundled with the plugin (the zip carries no README and the project has no
public web address yet): what each box does, in the panel's words."""

HELP_HTML = """<html><head><meta charset="utf-8"><title>SpectralX panel</title></head><body
style="font-family:sans-serif;max-width:46em">
<h2>SpectralX panel</h2>
<p>Land-cover segmentation of multispectral and hyperspectral rasters with a SpectralX model: a frozen
optical foundation model adapted to your sensor's bands.</p>
<h3>Install… and Models…</h3>
<p><b>Install…</b> installs what QGIS's Python lacks of SpectralX's pinned packages (PyTorch, rasterio,
safetensors, scikit-learn, …) into a folder of your QGIS profile, with QGIS's own Python and no administrator
rights, then checks them: every package imports, and a matrix product and a small SpectralX network run on
your GPU (or the CPU), and the dialog says which really ran. Choose the CUDA build it offers for your NVIDIA
driver, or install offline from a folder of wheels. Cancel keeps nothing. The same is
<i>Processing ▸ SpectralX ▸ Setup ▸ Install dependencies</i>; <i>Check installation</i> repeats the check.</p>
<p><b>Models…</b> opens the model manager: the checkpoints and backbones in your model folder (with each
checkpoint's sensor, classes, scores and whether its backbone is there; the panel's fine-tuned models are
written there too), <b>Add model or backbone…</b> for a checkpoint or backbone file (linked or copied in, a
checkpoint with the backbone beside it) or a foundation-model release you downloaded (imported),
<b>Refresh</b> (the panel's checkpoint list follows), and known releases with their licence, source page and, where they
can be fetched directly, a download that resumes and checks the file's checksum.</p>
<h3>Model</h3>
<p>Pick a checkpoint (<code>.safetensors</code>). Its card lists the classes, the bands it expects and how well
it did on held-out pixels, next to a random forest trained on the same pixels when the card has one.
The backbone file is only needed when it is not beside the checkpoint.</p>
<h3>Input and band mapping</h3>
<p>Choose the raster. Each band the model expects is read from the raster band(s) nearest in wavelength;
the table shows where each comes from and how well it matches (quality). Files that carry no wavelengths
(every Landsat Level-1 file) need the <b>Sensor</b> picker: choose the sensor and check the band order
(for a 3-band Landsat 8 file usually <code>B2,B3,B4</code>). Double-click a row to choose a raster band by
hand. <b>Save band map…</b> writes the mapping as JSON for the command line (<code>--band-map</code>) and
Processing (<code>BAND_MAP</code>); <b>Load band map…</b> reads one back.</p>
<p>When a model cannot read a raster at all (a 218-band EnMAP model and a 3-band Landsat file), the panel
says so; <b>Fine-tune from polygons</b> then starts a new model from that model's backbone and says so in
one line (the checkpoint itself is not changed).</p>
<h3>Run</h3>
<p><b>Segment layer</b>, <b>Segment current view</b> or <b>Draw area</b> (drag a rectangle). Runs happen in
the background; <b>Cancel</b> stops them and keeps nothing. Results go to the output folder and appear,
styled, in the <i>SpectralX</i> layer group, named after the raster and the model.</p>
<h3>Fine-tune from polygons</h3>
<p>Digitize polygons over the raster with a class field (a name such as <i>water</i>), choose the layer and
field, and press <b>Fine-tune from polygons</b>. The new model is written to the model folder (the one
<b>Models…</b> lists), beside the backbone it needs, and selected when done. The progress line shows
the step, the time left and the latest validation mIoU.</p>
<h3>Where to label next, and the next round</h3>
<p><b>Suggest where to label</b> adds a point layer of places (20 by default) where a new label helps the
model most: it is unsure there, or its network and its random forest disagree. The places are spread over
the area of the last segmentation and over the predicted classes; each carries the predicted class, the
confidence and why it was picked. Digitize a polygon of the right class at each place in the same polygon
layer, then press <b>Fine-tune again</b>: the next round continues from the selected model with every
polygon (old and new), and the model card lists each round's labels and validation scores.</p>
<h3>Processing</h3>
<p>The same runs are in the Processing toolbox (SpectralX): segment, fine-tune, pretrain and evaluate (and,
under Setup, install dependencies and check installation), with a
<code>SENSOR</code> parameter such as <code>landsat8:B2,B3,B4</code>; they also work in batch mode, in models
and with <code>qgis_process</code>.</p>
</body></html>
"""


def help_url():
    """The panel's help page, written once to a temporary file, as a URL for the system's browser."""
    import os
    import tempfile

    from qgis.PyQt.QtCore import QUrl

    path = os.path.join(tempfile.gettempdir(), "spectralx_qgis_help.html")
    if not os.path.isfile(path) or open(path, encoding="utf-8").read() != HELP_HTML:
        with open(path, "w", encoding="utf-8") as f:
            f.write(HELP_HTML)
    return QUrl.fromLocalFile(path)
