"""Real container images for the three functions, a real Docker engine, and the real Lambda
Runtime Interface Emulator (RIE): what ``make images``, ``make image-test`` and the rehearsal
use. Host-side tooling only: nothing here is copied into an image.

- :mod:`containers.engine`: find or start a Docker engine (``ensure_engine``).
- :mod:`containers.base`: the base image, built from Debian's archive when no registry answers.
- :mod:`containers.wheelhouse`: the host-side wheelhouse every image build installs from.
- :mod:`containers.images`: build the function images (``ensure_images``).
- :mod:`containers.rie`: run an image as Lambda runs it, under the RIE (``run_function``).
"""
