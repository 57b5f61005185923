"""The SpectralX panel (dock widget): the band table, the model card, the run controller and the background
tasks it starts, the map tool, the analyst loop (suggest, next round) and the reporting buttons."""
