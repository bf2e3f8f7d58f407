"""A print's captures as timelapse videos, rendered with OctoPrint's ffmpeg.

* :mod:`.plan`: which videos a request makes, their frames (one per captured layer), sizes
  and the grid's tiling as on the bed;
* :mod:`.ffmpeg`: OctoPrint's ffmpeg setting checked, the command lines, ffmpeg's reports;
* :mod:`.tiles`: the frames Pillow draws (labelled blanks, letterboxed odd sizes);
* :mod:`.frames`: a video's frames laid out as numbered files for ffmpeg;
* :mod:`.process`: one niced ffmpeg process, stopped and continued;
* :mod:`.files`: the frames file beside each video, saving a render, leftovers;
* :mod:`.jobs`: a render job, the gate that makes it wait, the gallery port;
* :mod:`.run`: one job from its turn to its end (frames, ffmpeg, saving);
* :mod:`.renderer`: the queue and its named thread, one render at a time.

The names of the files are :mod:`store.names`. Plain modules: nothing here imports
OctoPrint.
"""
