"""`spectralx evaluate PREDICTION --reference RASTER_OR_VECTOR`: accuracy of a class raster."""
import json


def register(sub):
    p = sub.add_parser(
        "evaluate", help="accuracy of a class raster against reference labels (raster or vector)",
        description="Overall accuracy, Cohen's kappa, per-class IoU and F1, mIoU over the classes present "
        "in the reference, and the confusion matrix (rows = reference, columns = prediction).")
    p.add_argument("prediction", help="class raster (e.g. the output of spectralx segment)")
    p.add_argument("--reference", required=True,
                   help="reference labels: a label raster (0 = unlabelled) or polygons/points (any OGR format)")
    p.add_argument("--class-field", help="vector field holding the reference class (names or values)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-o", "--output", help="also write the JSON result to this file")
    p.set_defaults(func=run)


def run(args):
    from ..evaluate import evaluate, format_table
    result = evaluate(args.prediction, args.reference, class_field=args.class_field)
    text = json.dumps(result, indent=1)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.json:
        print(text)
        return
    print(f"{args.prediction} vs {args.reference} ({result['reference_kind']})")
    for note in result["notes"]:
        print(f"note: {note}")
    if result["unpredicted_reference_pixels"]:
        print(f"note: {result['unpredicted_reference_pixels']} reference pixels fall on prediction nodata "
              "and are not counted")
    print(format_table(result))
