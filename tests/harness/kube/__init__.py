"""A real Kubernetes control plane, the real z2jh chart, and local processes as containers.

``scripts/kube.sh start`` runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok on loopback. kwok marks pods Running with an address from a
loopback CIDR; nothing runs them. This package plays the parts a node would:

- :mod:`.api`: a small REST client of the API server (admin client certificate);
- :mod:`.node`: the kubelet stand-in (a process per Running pod, with the pod's own
  env, command and volumes, in a private mount namespace), the kube-proxy/DNS
  stand-in (a TCP forwarder on each Service's cluster IP and an ``/etc/hosts`` per
  pod) and a provisioner binding a hostPath PersistentVolume to each claim;
- :mod:`.release`: ``helm install`` of the released chart with our values.
"""
