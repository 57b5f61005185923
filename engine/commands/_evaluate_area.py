"""`spectralx evaluate MAP --reference POINTS.gpkg --class-field F --area`: accuracy and areas with 95 %
intervals, written as JSON + HTML + PNG (kept apart from evaluate.py, which compares pixels)."""

import json
import os


def default_report(points: str) -> str:
    return os.path.splitext(points)[0] + "_report.json"


def run_area(args) -> int:
    from ..area_report import assess
    from ..area_report_files import write_report
    from ..errors import SpectralXError
    from ..inference.memory import parse_memory

    if not args.class_field:
        raise SpectralXError("--area needs the points' reference field: --class-field reference")
    budget = parse_memory(args.max_memory)
    output = args.output or default_report(args.reference)
    check_paths(args, output)
    result = assess(args.prediction, args.reference, args.class_field, design=args.design, budget=budget)
    paths = write_report(result, output)
    if args.json:
        print(json.dumps(result, indent=1, default=float))
    else:
        print(format_summary(result))
    print(f"wrote {paths['json']}, {paths['html']}, {paths['png']}")
    return 0


def _pm(entry, digits=3):
    if entry.get("estimate") is None:
        return "-"
    return f"{entry['estimate']:,.{digits}f} ± {entry['ci95']:,.{digits}f}"


def format_summary(result) -> str:
    ha = result.get("pixel_area_ha")
    lines = [
        f"{result['sample_size']} points, {result['design']} design; overall accuracy "
        f"{_pm(result['overall_accuracy'])} (95 %)"
    ]
    lines += [f"note: {n}" for n in result.get("notes", [])]
    head = f"{'class':<20} {'mapped':>14} {'estimated ± 95 %':>26} {'user':>16} {'producer':>16}"
    lines.append(head + ("   (ha)" if ha else "   (pixels)"))
    for c in result["classes"]:
        mapped = c["mapped_area_ha"] if ha else c["mapped_pixels"]
        area = c["area_ha"] if ha else c["area_pixels"]
        lines.append(
            f"{str(c['name'])[:20]:<20} {mapped:>14,.1f} {_pm(area, 1):>26} "
            f"{_pm(c['users_accuracy']):>16} {_pm(c['producers_accuracy']):>16}"
        )
    return "\n".join(lines)


def check_paths(args, output: str) -> None:
    """The map opens, the points exist; none of the three report files is an input or exists."""
    from ..area_report_files import report_paths
    from ..fileio import check_inputs, check_outputs, raster_files, vector_files
    from ._validate import check_rasters

    check_rasters([(args.prediction, "map")])
    check_inputs([(args.reference, "reference points")], folders_ok=True)
    paths = report_paths(output)
    inputs = raster_files(args.prediction) + vector_files(args.reference)
    check_outputs(
        [(paths["json"], "report"), (paths["html"], "HTML report"), (paths["png"], "chart")], inputs, args.overwrite
    )
