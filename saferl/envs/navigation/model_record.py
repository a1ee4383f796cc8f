"""A robot's physics numbers in its compiled world, for comparing saferl's models with Safety-Gymnasium's.

Needs only mujoco and numpy, so ``benchmarks/fidelity/reference_worker.py`` loads this very file by path in the
reference environment (where saferl is not installed): both sides write the record with the same code.
"""

from __future__ import annotations

import mujoco


def robot_model_record(model, root: str = "robot") -> dict:
    """The physics numbers of the robot under body ``root``, in that body's frame after ``mj_forward``.

    Bodies (mass, principal inertia, centre of mass), joints (type, axis, anchor, limits, damping,
    armature, stiffness, spring reference), colliding geoms (type, size, position, condim, friction;
    meshes by type only) and actuators (joint, gear, gain, bias, control and force ranges), each in
    model order. ``reference_worker.py`` writes the same record from Safety-Gymnasium's compiled world.
    """
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    a = model.body(root).id
    origin, frame = data.xpos[a].copy(), data.xmat[a].reshape(3, 3).copy()

    def local(v):
        return [round(float(x), 9) for x in frame.T @ v]

    bodies = [b for b in range(model.nbody) if b == a or (model.body_rootid[b] == a and b > a)]
    record = {"timestep": float(model.opt.timestep), "integrator": int(model.opt.integrator),
              "bodies": [], "joints": [], "geoms": [], "actuators": []}
    for b in bodies:
        mass = float(model.body_mass[b])
        record["bodies"].append({"mass": mass, "inertia": sorted(model.body_inertia[b].tolist()),
                                 "com": local(data.xipos[b] - origin) if mass > 0 else None})
        for j in range(model.body_jntadr[b], model.body_jntadr[b] + model.body_jntnum[b]):
            dof, hinge = model.jnt_dofadr[j], model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
            record["joints"].append({
                "type": int(model.jnt_type[j]), "axis": local(data.xaxis[j]), "anchor": local(data.xanchor[j] - origin),
                "limited": int(model.jnt_limited[j]), "range": model.jnt_range[j].tolist(),
                "damping": float(model.dof_damping[dof]), "armature": float(model.dof_armature[dof]),
                "stiffness": float(model.jnt_stiffness[j]),
                "springref": float(model.qpos_spring[model.jnt_qposadr[j]]) if hinge else 0.0})
        for g in range(model.body_geomadr[b], model.body_geomadr[b] + model.body_geomnum[b]):
            if not (model.geom_contype[g] or model.geom_conaffinity[g]):
                continue      # visual only
            mesh = model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH
            record["geoms"].append({
                "type": int(model.geom_type[g]), "size": [] if mesh else model.geom_size[g].tolist(),
                "pos": [] if mesh else local(data.geom_xpos[g] - origin),
                "condim": int(model.geom_condim[g]), "friction": model.geom_friction[g].tolist()})
    first_joint = model.body_jntadr[a]
    for u in range(model.nu):
        record["actuators"].append({
            "joint": int(model.actuator_trnid[u, 0] - first_joint), "gear": float(model.actuator_gear[u, 0]),
            "gain": model.actuator_gainprm[u, :3].tolist(),
            "bias": model.actuator_biasprm[u, :3].tolist() if model.actuator_biastype[u] else [],   # unused when none
            "ctrlrange": model.actuator_ctrlrange[u].tolist(),
            "forcerange": model.actuator_forcerange[u].tolist() if model.actuator_forcelimited[u] else []})
    return record
