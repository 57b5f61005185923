"""`spectralx evaluate PREDICTION --reference RASTER_OR_VECTOR`: accuracy of a class raster."""

import json


def register(sub):
    p = sub.add_parser(
        "evaluate",
        help="accuracy of a class raster against reference labels (raster or vector)",
        description="Overall accuracy, Cohen's kappa, per-class IoU and F1, mIoU over the classes present "
        "in the reference, and the confusion matrix (rows = reference, columns = prediction).",
    )
    p.add_argument("prediction", help="class raster (e.g. the output of spectralx segment)")
    p.add_argument(
        "--reference",
        required=True,
        help="reference labels: a label raster (0 = unlabelled) or polygons/points (any OGR format)",
    )
    p.add_argument("--class-field", help="vector field holding the reference class (names or values)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("-o", "--output", help="also write the JSON result to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    area = p.add_argument_group("accuracy and area with confidence intervals (Olofsson et al. 2014)")
    area.add_argument(
        "--area",
        action="store_true",
        help="reference points of a sample (e.g. from spectralx "
        "sample): error matrix in area proportions, overall/user's/producer's accuracy and the "
        "error-adjusted area of every class, each with its 95 %% interval; writes -o REPORT.json "
        "(default POINTS_report.json) with REPORT.html and REPORT.png beside it",
    )
    area.add_argument(
        "--design",
        default="auto",
        choices=("auto", "stratified", "simple"),
        help="sampling design: stratified (strata = map classes, the points' 'stratum' field), "
        "simple (simple random or systematic), auto (stratified when the points have a stratum)",
    )
    area.add_argument("--max-memory", metavar="SIZE", help="memory for reading the map (default as segment)")
    p.set_defaults(func=run)


def run(args):
    from ..evaluate import evaluate, format_table

    if args.area:
        from ._evaluate_area import run_area

        return run_area(args)
    check_paths(args)
    result = evaluate(args.prediction, args.reference, class_field=args.class_field)
    text = json.dumps(result, indent=1)
    if args.output:
        from ..fileio import write_text

        write_text(args.output, text + "\n")
    if args.json:
        print(text)
        return
    print(f"{args.prediction} vs {args.reference} ({result['reference_kind']})")
    for note in result["notes"]:
        print(f"note: {note}")
    if result["unpredicted_reference_pixels"]:
        print(
            f"note: {result['unpredicted_reference_pixels']} reference pixels fall on prediction nodata "
            "and are not counted"
        )
    print(format_table(result))


def check_paths(args) -> None:
    """Both inputs open; -o is neither of them (shared check, spectralx.fileio)."""
    from ..fileio import check_inputs, check_outputs, raster_files, vector_files
    from ._validate import check_rasters

    check_rasters([(args.prediction, "prediction")])
    check_inputs([(args.reference, "reference")], folders_ok=True)  # OGR reads some folders (.gdb)
    if args.output:
        inputs = raster_files(args.prediction) + raster_files(args.reference) + vector_files(args.reference)
        check_outputs([(args.output, "result")], inputs, args.overwrite)
