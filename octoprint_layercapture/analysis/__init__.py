"""What the plugin makes of captures besides the images themselves.

* :mod:`.records`: the process state at the stop (factors, fan, tool), the layer's place in
  the G-code file, the camera and the per-image facts, gathered into the metadata
  (schema version 2);
* :mod:`.gcode_file`: reading the printed file off OctoPrint's threads (its hash, line
  numbers, a layer's bytes);
* :mod:`.toolpath`: a layer's extrusion moves as polylines in bed millimetres, and an SVG;
* :mod:`.dataset`: a print's captures as a Hugging Face ImageFolder zip;
* :mod:`.events`: the payload of the plugin's event per captured layer;
* :mod:`.video`: a print's timelapse videos (one per grid position, one of the grid),
  rendered with OctoPrint's ffmpeg on a background thread.

Plain modules: nothing here imports OctoPrint.
"""
